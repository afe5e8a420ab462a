import { MAX_TIMER_MS } from '../util/duration-option.js';

/**
 * The `idle_in_transaction_session_timeout` of the relay's claim transactions (and the
 * `query_timeout` of its own pool): past twice the publish timeout (plus slack), a lane stuck
 * in its claim transaction is ended by Postgres, which puts its rows back.
 */
export function stallTimeoutMs(publishTimeoutMs: number): number {
  return publishTimeoutMs * 2 + 10_000;
}

/**
 * The largest `publishTimeoutMs` whose stall timeout Postgres takes: the setting is an int of
 * milliseconds (at most 2^31 - 1), and a larger one makes Postgres refuse every connection.
 */
export const MAX_PUBLISH_TIMEOUT_MS = Math.floor((MAX_TIMER_MS - stallTimeoutMs(0)) / 2);
