import pg from 'pg';
import { errorMessage, type OutboxLogger } from '../util/logger.js';

/** How long a new connection may take before `connect()` fails, unless the caller says otherwise. */
export const CONNECTION_TIMEOUT_MS = 10_000;

/**
 * A pg `Pool` for outboxkit's own use, whose clients can never crash the process. pg emits
 * `'error'` on a client whose session dies (a restart, `pg_terminate_backend`), and an emitter
 * with no listener throws. pg-pool listens only while a client sits idle in the pool: from the
 * hand-over until the borrower adds a listener of its own, and whenever the borrower has none,
 * nobody does. A Postgres shutdown sends its FATAL right behind the ready message of a fresh
 * connection, so both are parsed in one go, inside that gap. Hence a listener for each client's
 * whole life, added as pg-pool creates it. Each caller keeps its own options; only the timeout
 * to connect has a default, since pg's is to wait forever.
 */
export function createPool(config: pg.PoolConfig, logger: OutboxLogger): pg.Pool {
  const pool = new pg.Pool({ connectionTimeoutMillis: CONNECTION_TIMEOUT_MS, ...config });
  pool.on('error', (error) =>
    logger.warn('idle Postgres connection failed', { error: errorMessage(error) }),
  );
  // A borrower learns of the failure from the statement that fails next; this only keeps the
  // process alive until then, so it stays silent rather than log each failure twice.
  pool.on('connect', (client) => client.on('error', ignore));
  return pool;
}

function ignore(): void {}
