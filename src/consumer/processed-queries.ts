import { DEFAULT_SCHEMA, outboxTables } from '../sql/outbox-tables.js';

/** The SQL the consumer runs against the processed-messages table of one schema. */
export interface ProcessedQueries {
  /**
   * $1 consumer, $2 business key, $3 message id, $4 time limit in ms. Returns the session's pid
   * when the key was new, no row when it was processed (or is being processed) already. See
   * `leastLimit` for what $4 does.
   */
  /** The schema these statements name. */
  readonly schema: string;
  readonly claimOne: string;
  /**
   * $1 consumer, $2 keys (text[]), $3 message ids (text[]), $4 time limit in ms. Returns the keys
   * that were new, then the session's pid, in that order: the claim reads its rows by position.
   * Keys are inserted in sorted order, so two batches sharing keys lock them in the same order
   * and do not deadlock.
   */
  readonly claimMany: string;
  /** $1 pid: cancels the statement a timed-out handler's session is running, if any. */
  readonly cancelBackend: string;
  /**
   * $1 pid, $2 ms: ends a timed-out handler's session whose rollback does not come back, only if
   * its transaction began at least $2 ms ago. The terminate may be retried for minutes while
   * Postgres is away; after a restart its pid can belong to another session, whose transaction
   * began later. Measured as an age on the server's clock, so no clock skew enters.
   */
  readonly terminateBackend: string;
  /**
   * $1 age in ms, $2 consumers (text[], null for all), $3 limit. Deletes one batch of old keys,
   * skipping rows a transaction holds.
   */
  readonly deleteOld: string;
}

/**
 * Sets the transaction's `lock_timeout` and `statement_timeout` to the handler's time limit ($4 ms),
 * unless the session has a shorter one, in the claim's own statement (no extra round trip),
 * before its insert waits on a key another transaction holds. So the claim never waits for a
 * stuck transaction longer than the limit, and after a time-out the rollback waits for no
 * statement longer than that, even when the cancel could not be sent. No statement can usefully
 * run longer than the handler's whole limit, so the handler loses nothing by it.
 */
function leastLimit(setting: 'lock_timeout' | 'statement_timeout'): string {
  return `set_config('${setting}', CASE WHEN current_setting('${setting}') <> '0'
        AND current_setting('${setting}')::interval <= $4::int * interval '1 ms'
      THEN current_setting('${setting}') ELSE $4::int::text END, true)`;
}

/**
 * Raises the session's `idle_in_transaction_session_timeout` to the handler's time limit ($4 ms)
 * for this transaction, where a shorter one is set (a DBA's role or database setting). A handler
 * may wait between its statements for as long as its limit allows, and the host rolls back at
 * the limit; a shorter idle limit ended the session under it (FATAL 25P03), which looked like a
 * lost database: retried for ever, never counted as an attempt.
 */
function idleLimitAtLeastHandlers(): string {
  const setting = 'idle_in_transaction_session_timeout';
  return `set_config('${setting}', CASE WHEN current_setting('${setting}') = '0'
        OR current_setting('${setting}')::interval >= $4::int * interval '1 ms'
      THEN current_setting('${setting}') ELSE $4::int::text END, true)`;
}

/** The transaction's limits, set in the claim's own statement: see `leastLimit`. */
function limitSettings(): string[] {
  return [leastLimit('lock_timeout'), leastLimit('statement_timeout'), idleLimitAtLeastHandlers()];
}

/**
 * The limits as a CTE, for a claim that inserts the rows of a query. A volatile CTE is neither
 * inlined nor skipped, and the insert reads its row first.
 */
function limitsCte(): string {
  return `limits AS (SELECT ${limitSettings().join(', ')})`;
}

/**
 * $3 (the message id) with the limits set on the way: see `leastLimit`. The row's values are
 * computed before the insert looks for a conflicting key, so the limits hold when it waits;
 * set_config is volatile, so it is neither folded away nor skipped, and never returns null. In
 * the VALUES row rather than a CTE, the one-row claim is planned like a plain insert (a CTE
 * cost Postgres about 40 us more per message).
 */
function messageIdSettingLimits(): string {
  return `CASE WHEN ${limitSettings()
    .map((limit) => `${limit} IS NULL`)
    .join(' OR ')} THEN NULL ELSE $3 END`;
}

export function processedQueries(schema?: string): ProcessedQueries {
  const { processed } = outboxTables(schema);
  return Object.freeze({
    schema: schema ?? DEFAULT_SCHEMA,
    claimOne: `INSERT INTO ${processed} (consumer, business_key, message_id)
      VALUES ($1, $2, ${messageIdSettingLimits()})
      ON CONFLICT DO NOTHING RETURNING pg_backend_pid() AS pid`,
    claimMany: `WITH ${limitsCte()}
      INSERT INTO ${processed} (consumer, business_key, message_id)
      SELECT $1, k, NULLIF(m, '') FROM limits, unnest($2::text[], $3::text[]) AS u(k, m) ORDER BY k
      ON CONFLICT DO NOTHING RETURNING business_key, pg_backend_pid() AS pid`,
    cancelBackend: 'SELECT pg_cancel_backend($1)',
    terminateBackend: `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE pid = $1 AND xact_start <= now() - $2::bigint * interval '1 millisecond'`,
    deleteOld: `DELETE FROM ${processed} WHERE (consumer, business_key) IN (
        SELECT consumer, business_key FROM ${processed}
        WHERE processed_at < now() - $1::bigint * interval '1 millisecond'
          AND ($2::text[] IS NULL OR consumer = ANY($2::text[]))
        LIMIT $3
        FOR UPDATE SKIP LOCKED)`,
  });
}
