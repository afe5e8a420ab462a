import { outboxTables } from '../sql/outbox-tables.js';

/** The SQL the consumer runs against the processed-messages table of one schema. */
export interface ProcessedQueries {
  /**
   * $1 consumer, $2 business key, $3 message id. Returns the session's pid when the key was
   * new, no row when it was processed (or is being processed) already.
   */
  readonly claimOne: string;
  /**
   * $1 consumer, $2 keys (text[]), $3 message ids (text[]). Returns the keys that were new.
   * Keys are inserted in sorted order, so two batches sharing keys lock them in the same order
   * and do not deadlock.
   */
  readonly claimMany: string;
  /** $1 pid: cancels the statement a timed-out handler's session is running, if any. */
  readonly cancelBackend: string;
  /**
   * $1 age in ms, $2 consumers (text[], null for all), $3 limit. Deletes one batch of old keys,
   * skipping rows a transaction holds.
   */
  readonly deleteOld: string;
}

export function processedQueries(schema?: string): ProcessedQueries {
  const { processed } = outboxTables(schema);
  return Object.freeze({
    claimOne: `INSERT INTO ${processed} (consumer, business_key, message_id)
      VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING pg_backend_pid() AS pid`,
    claimMany: `INSERT INTO ${processed} (consumer, business_key, message_id)
      SELECT $1, k, m FROM unnest($2::text[], $3::text[]) AS u(k, m) ORDER BY k
      ON CONFLICT DO NOTHING RETURNING business_key, pg_backend_pid() AS pid`,
    cancelBackend: 'SELECT pg_cancel_backend($1)',
    deleteOld: `DELETE FROM ${processed} WHERE (consumer, business_key) IN (
        SELECT consumer, business_key FROM ${processed}
        WHERE processed_at < now() - $1::bigint * interval '1 millisecond'
          AND ($2::text[] IS NULL OR consumer = ANY($2::text[]))
        LIMIT $3
        FOR UPDATE SKIP LOCKED)`,
  });
}
