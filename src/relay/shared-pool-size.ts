import { poolMax } from '../sql/pool-size.js';
import { BATCHES_PER_LANE } from './relay-lane.js';

/**
 * Connections a relay holds at most at once: two per lane (a batch awaiting its confirms, the
 * next one's claim), one for the retry lane, and one for LISTEN.
 */
export function relayConnections(concurrency: number, listen: boolean): number {
  return concurrency * BATCHES_PER_LANE + 1 + (listen ? 1 : 0);
}

/**
 * The warning for a pool of the application's that the relay could fill, or undefined. While it
 * drains a backlog, the relay holds its connections nearly all the time, and the application's
 * own queries wait for what is left. Only a pg `Pool` says its size (`options.max`).
 */
export function sharedPoolWarning(
  pool: unknown,
  concurrency: number,
  listen: boolean,
): string | undefined {
  const max = poolMax(pool);
  if (max === undefined) return undefined;
  const held = relayConnections(concurrency, listen);
  if (max > held) return undefined;
  return (
    `the relay can hold ${held} connections at once while it drains a backlog, and the pool it ` +
    `was given has ${max}: the application's own queries would wait for connections. Give the ` +
    `relay a pool of its own (\`databaseUrl\`), lower its \`concurrency\`, or raise the pool's ` +
    `\`max\` above ${held}`
  );
}
