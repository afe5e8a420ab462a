import pg from 'pg';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { DEFAULT_BATCH_SIZE, DEFAULT_CONCURRENCY } from '../../src/relay/relay-options.js';
import { silentLogger } from '../../src/util/logger.js';
import { AMQP_URL, sleep } from './bench-services.js';

/** The relay's own defaults, as the benchmarks that say "at its defaults" run it. */
export const RELAY_DEFAULTS = Object.freeze({
  batchSize: DEFAULT_BATCH_SIZE,
  concurrency: DEFAULT_CONCURRENCY,
});

/**
 * `timeRelayDrain` of `bench/relay-drain.ts` against any database: starts a relay on a
 * pre-filled outbox and times it from the moment it is connected to RabbitMQ until it has
 * published `expected` messages. Returns milliseconds.
 */
export async function timeRelayDrainAt(
  databaseUrl: string,
  schema: string,
  expected: number,
  config: { readonly batchSize: number; readonly concurrency: number },
  extra: {
    readonly pollIntervalMs?: number;
    /** Rows of one ordering key per batch; the relay's default when not given. */
    readonly keyRunSize?: number;
    /**
     * Called once the rows are published, before the relay stops: a CPU snapshot taken later
     * would miss the relay's Postgres backends, which exit with its pool.
     */
    readonly onDrained?: () => void;
  } = {},
): Promise<number> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: config.concurrency * 2 + 3 });
  pool.on('error', () => {});
  try {
    // Open the connections before the clock starts, as a running relay would have them.
    // Each lane keeps two batches in flight, each on a connection of its own. Settled, not all:
    // a client left checked out when another fails to connect (Postgres out of connection
    // slots) would make `pool.end()` below wait forever.
    const opened = await Promise.allSettled(
      Array.from({ length: config.concurrency * 2 + 1 }, () => pool.connect()),
    );
    for (const o of opened) if (o.status === 'fulfilled') o.value.release();
    const failed = opened.find((o) => o.status === 'rejected');
    if (failed) throw failed.reason;
    const relay = new OutboxRelay({
      pool,
      amqpUrl: AMQP_URL,
      schema,
      batchSize: config.batchSize,
      concurrency: config.concurrency,
      listen: false,
      pollIntervalMs: extra.pollIntervalMs ?? 1000,
      ...(extra.keyRunSize !== undefined && { keyRunSize: extra.keyRunSize }),
      logger: silentLogger,
    });
    await relay.start();
    try {
      while (!relay.isConnected) await sleep(1);
      const start = performance.now();
      for (let s = relay.stats(); s.published < expected; s = relay.stats()) {
        if (s.errors > 0 || s.parked > 0 || s.retried > 0) {
          throw new Error(`relay failed: ${JSON.stringify(s)}`);
        }
        await sleep(1);
      }
      const ms = performance.now() - start;
      extra.onDrained?.();
      return ms;
    } finally {
      await relay.stop();
    }
  } finally {
    await pool.end();
  }
}
