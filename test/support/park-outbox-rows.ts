import type { TestDatabase } from './test-database.js';

/**
 * Moves outbox rows to the parked table as the relay does when it gives up on them: every row,
 * or those of `messageIds`. `reason` is the text stored, or `{ sql }` for an expression over the
 * row (`CASE exchange WHEN ...`); `attempts` and `lastError` replace the row's own.
 */
export async function parkOutboxRows(
  t: TestDatabase,
  reason: string | { readonly sql: string },
  options: {
    readonly messageIds?: ReadonlyArray<string | undefined>;
    readonly attempts?: number;
    readonly lastError?: string;
  } = {},
): Promise<void> {
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const where = options.messageIds ? `WHERE message_id = ANY(${param(options.messageIds)})` : '';
  const reasonSql = typeof reason === 'string' ? param(reason) : reason.sql;
  const attempts = options.attempts === undefined ? 'attempts' : `${param(options.attempts)}::int`;
  const lastError = options.lastError === undefined ? 'last_error' : param(options.lastError);
  await t.pool.query(
    `WITH moved AS (DELETE FROM "${t.schema}".outbox ${where} RETURNING *)
     INSERT INTO "${t.schema}".outbox_parked (id, message_id, exchange, routing_key, payload,
       content_type, headers, ordering_key, correlation_id, causation_id, created_at, attempts,
       last_error, reason)
     SELECT id, message_id, exchange, routing_key, payload, content_type, headers, ordering_key,
       correlation_id, causation_id, created_at, ${attempts}, ${lastError}, ${reasonSql}
     FROM moved`,
    params,
  );
}
