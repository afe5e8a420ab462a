import { setTimeout } from 'node:timers';
import type pg from 'pg';
import { StartupError } from '../errors/startup-error.js';
import { migrate } from '../migrate/migrate.js';
import { checkoutClient } from '../sql/checkout-client.js';
import { databaseMisconfiguration } from '../start/misconfiguration.js';
import { START_CHECK_TIMEOUT_MS } from '../start/start-checks.js';
import { errorMessage } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';

/** Pause between connection attempts while Postgres is not reachable. */
const RETRY_PAUSE_MS = 250;

/**
 * The module's `migrate: true` at bootstrap. The migration is the first statement of the start,
 * so it must fail the way the start checks do: a login or database refused is the same
 * `StartupError` (code and message). Unlike the checks it cannot go on without Postgres, so an
 * unreachable database is retried for the checks' bound (5 s: a Postgres starting beside the
 * application) and then fails as `database-unreachable`, never with pg's raw error.
 * Only reaching the database is bounded: a migration that waits for another one's lock runs on.
 * @param where the redacted URL, or a description of the pool, for messages.
 */
export async function migrateAtBootstrap(
  pool: pg.Pool,
  schema: string,
  where: string,
): Promise<readonly number[]> {
  await reachable(pool, where);
  try {
    return (await migrate(pool, { schema })).applied;
  } catch (error) {
    throw databaseMisconfiguration(error, where) ?? error;
  }
}

/** Resolves once a connection was made; rejects typed on a refusal or after the bound. */
async function reachable(pool: pg.Pool, where: string): Promise<void> {
  const deadline = monotonicMs() + START_CHECK_TIMEOUT_MS;
  let last: unknown;
  while (monotonicMs() < deadline) {
    // A connect that hangs is given up at the deadline; its client is dropped whenever it comes.
    const bound = AbortSignal.timeout(Math.max(1, deadline - monotonicMs()));
    try {
      (await checkoutClient(pool, () => {}, bound)).release();
      return;
    } catch (error) {
      if (error === bound.reason) {
        last ??= new Error(`no answer within ${START_CHECK_TIMEOUT_MS} ms`);
        break;
      }
      const misconfigured = databaseMisconfiguration(error, where);
      if (misconfigured) throw misconfigured;
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
  }
  throw new StartupError(
    'database-unreachable',
    'postgres',
    `Postgres at ${where} could not be reached within ${START_CHECK_TIMEOUT_MS / 1000} s (${errorMessage(last)}): \`migrate: true\` migrates the schema at bootstrap and needs the database for it; start Postgres, or run \`outboxkit migrate\` at deploy and leave \`migrate\` off, so that the application starts without Postgres and connects in the background`,
    last,
  );
}
