import type { Pool } from 'pg';
import { sqlStateOf } from '../consumer/database-errors.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { monotonicMs } from '../util/monotonic-clock.js';

/**
 * Postgres refused a new connection for want of a slot (53300: `max_connections` reached, or
 * the role's or the database's `CONNECTION LIMIT`) while the relay's pool holds others: the
 * database is up and the relay works on those. Not an outage, which the lanes' batch failures
 * and `/health` report.
 */
export function isConnectionLimitRefusal(error: unknown, pool: Pool): boolean {
  return sqlStateOf(error) === '53300' && (pool as { totalCount?: number }).totalCount! > 0;
}

/**
 * One lane's wait after Postgres refused it a connection: longer each time, whatever other
 * batches do meanwhile, so that a full database sees one try a lane every `maxMs` rather than
 * one per batch, and the slots that free up go to the application's own pools. It starts over
 * after a quiet spell of twice `maxMs`.
 */
export class ConnectionLimitBackoff {
  readonly #policy: BackoffPolicy;
  #refusals = 0;
  #lastAt = Number.NEGATIVE_INFINITY;

  constructor(policy: BackoffPolicy) {
    this.#policy = policy;
  }

  /** Another refusal: how long to wait before the lane claims again. */
  refused(): number {
    const now = monotonicMs();
    if (now - this.#lastAt > 2 * this.#policy.maxMs) this.#refusals = 0;
    this.#lastAt = now;
    this.#refusals += 1;
    return backoffDelay(this.#policy, this.#refusals);
  }
}
