import { MAX_MESSAGE_BYTES_LIMIT } from '../options/max-message-bytes.js';
import { outboxTables } from '../sql/outbox-tables.js';

// The creation time comes as epoch seconds, all the AMQP timestamp holds: parsing a timestamptz
// into a Date costs the relay more per row than the number does. date_part, not extract: extract
// computes in numeric, which cost Postgres 0.4 us more per claimed row (docs/benchmarks.md).
// Whole numbers as int8, not float8: a float8's text follows the session's extra_float_digits,
// and at -15 every AMQP timestamp read 2000000000.
// The id and the headers come as text, parsed by the relay (`claimedRows`): the pool may be the
// application's, whose type parsers may turn a bigint into a BigInt or leave jsonb a string.
// A payload over the relay's limit comes as NULL (the column is NOT NULL): such a row is only
// parked, and one over ~268 MB cannot even be read, as pg reads a bytea as hex text, longer than
// Node's largest string. octet_length reads a stored value's size without decompressing it.
// An infinite created_at (written by SQL) makes both times NULL, not an error that failed every
// claim: such a row is parked (`unencodableReason`). The two CASEs cost Postgres about 0.02 us a
// row (docs/benchmarks.md).
const rowColumns = (maxMessageBytes: number) => `id::text AS id, message_id, exchange, routing_key,
  CASE WHEN octet_length(payload) <= ${maxMessageBytes} THEN payload END AS payload, content_type,
  headers::text AS headers, ordering_key, correlation_id, causation_id,
  CASE WHEN isfinite(created_at) THEN floor(date_part('epoch', created_at))::int8 END AS created_at_s,
  attempts, rejections,
  CASE WHEN isfinite(created_at) THEN (date_part('epoch', now() - created_at) * 1000)::int8 END AS waited_ms`;

/** The relay's SQL for one schema, built once. */
export interface RelayQueries {
  /** $1: limit. Fresh rows (no failed attempt yet), heads of their ordering key only. */
  readonly claimFresh: string;
  /**
   * $1: limit, $2: `available_at` in epoch seconds and $3: id of a `ClaimCursor` position, $4:
   * lookback in ms. As `claimFresh`, rows after the position first, then, if they run short, the
   * rows up to it whose `available_at` is at most the lookback before it.
   */
  readonly claimFreshAfter: string;
  /** $1: limit. Rows that failed before; published one at a time to isolate a poison row. */
  readonly claimRetry: string;
  /**
   * $1: ordering keys, $2: the id of each key's head (claimed and locked by this transaction),
   * $3: rows per key at most, $4: rows in all at most. The rows that follow each head in id
   * order, fresh and due, up to the first that is not, each with its `run_pos` (1 follows the
   * head). Locked, skipping rows locked elsewhere: `unbrokenRuns` cuts a run at such a gap.
   */
  readonly claimRuns: string;
  /** $1: ids. */
  readonly deleteIds: string;
  /** $1: ids. Their payloads' sizes, for rows claimed without their payload (too large). */
  readonly payloadBytes: string;
  /** $1: ids, $2: reasons. */
  readonly park: string;
  /** $1: ids, $2: errors, $3: delays in ms, $4: 1 to count an attempt, 0 not to. */
  readonly scheduleRetry: string;
  /**
   * Milliseconds until the next row that waits for its time becomes available, on the
   * database's clock: the application's may be ahead of it, and a lane would then claim in a loop.
   * With the transaction's `now()` as epoch text (`now_epoch`): the claim's, run before it.
   */
  readonly msUntilNextAvailable: string;
  readonly listen: string;
}

/** `maxMessageBytes`: the relay's limit; a payload above it is not read (`OutboxRow.oversizeBytes`). */
export function relayQueries(
  schemaName: string,
  maxMessageBytes = MAX_MESSAGE_BYTES_LIMIT.max,
): RelayQueries {
  const t = outboxTables(schemaName);
  const ROW_COLUMNS = rowColumns(maxMessageBytes);
  // An ordered row may go only when no older row of its key is still in the outbox (in flight,
  // waiting for a retry or for its delay): one row per key is ever in flight, across relays.
  // Written so that only outbox_ordering_key_idx can serve it, read backward from the row itself,
  // whatever the statistics say: a row behind its key's head finds the row before it at once,
  // instead of walking from the key's oldest entry past every deleted one (a NOT EXISTS, planned
  // as an anti-join, did that for each waiting row). No `=` on the key: with one, the key would
  // drop out of the ORDER BY and the primary key could serve it, from the far end of the table.
  const headOfKey = `(o.ordering_key IS NULL OR (
      SELECT p.id FROM ${t.outbox} p
      WHERE p.ordering_key >= o.ordering_key AND (p.ordering_key, p.id) < (o.ordering_key, o.id)
      ORDER BY p.ordering_key DESC, p.id DESC
      LIMIT 1) IS NULL)`;
  // The last row's `available_at_epoch` is where the relay's ClaimCursor moves; key runs need
  // none. Epoch seconds as exact decimal text, not the timestamptz's own text: that follows the
  // session's DateStyle and TimeZone, and does not always read back as the same instant (with
  // DateStyle Postgres and TimeZone Asia/Kolkata it prints "IST", which reads back as Israel's,
  // 3.5 hours off). It costs Postgres what the timestamptz's text did.
  const cursorColumn = 'extract(epoch FROM available_at)::text AS available_at_epoch';
  // The cursor's $2 back as a timestamptz, in whole microseconds, whatever the session's
  // settings: the int8 multiplies the interval as a float8, exact for any count of microseconds
  // below 2^53 (the years 1685 to 2255). extract returns numeric from Postgres 14 on.
  const cursorAt = `(timestamptz 'epoch' + ($2::numeric * 1000000)::int8 * interval '1 microsecond')`;
  const claim = (attempts: string) => `SELECT ${ROW_COLUMNS}, ${cursorColumn}
    FROM ${t.outbox} o
    WHERE o.available_at <= now() AND ${attempts} AND ${headOfKey}
    ORDER BY o.available_at, o.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED`;
  // Rows after the cursor, and only if they run short the rows up to it, as far back as $4
  // milliseconds before it: the second scan, and its locks, run only when the first returns
  // fewer than the LIMIT. Neither reads the index entries of rows deleted longer ago, which a
  // scan from the head steps over one by one until a vacuum removes them.
  const claimAfter = (attempts: string) => `SELECT * FROM (
      ${claim(`${attempts} AND (o.available_at, o.id) > (${cursorAt}, $3::bigint)`)}
    ) after_cursor
    UNION ALL
    SELECT * FROM (
      ${claim(`${attempts} AND (o.available_at, o.id) <= (${cursorAt}, $3::bigint)
        AND o.available_at >= ${cursorAt} - $4 * interval '1 millisecond'`)}
    ) up_to_cursor
    LIMIT $1`;
  // A key's later rows cannot be anyone else's: its head is still in the outbox, locked by the
  // claiming transaction, so no claim elsewhere finds them heads.
  const claimRuns = `WITH heads AS (
      SELECT * FROM unnest($1::text[], $2::bigint[]) AS h(ordering_key, id)
    ), candidates AS (
      SELECT c.id, c.ready, h.ordering_key,
        row_number() OVER (PARTITION BY h.ordering_key ORDER BY c.id) AS run_pos
      FROM heads h CROSS JOIN LATERAL (
        SELECT p.id, (p.available_at <= now() AND p.attempts = 0) AS ready
        FROM ${t.outbox} p
        WHERE p.ordering_key = h.ordering_key AND p.id > h.id
        ORDER BY p.id
        LIMIT $3
      ) c
    ), runs AS (
      SELECT c.id AS run_id, c.run_pos FROM candidates c
      WHERE NOT EXISTS (SELECT 1 FROM candidates b
        WHERE b.ordering_key = c.ordering_key AND b.run_pos <= c.run_pos AND NOT b.ready)
      ORDER BY c.run_pos, c.id
      LIMIT $4
    )
    SELECT ${ROW_COLUMNS}, run_pos::int AS run_pos
    FROM ${t.outbox} o JOIN runs r ON r.run_id = o.id
    WHERE o.available_at <= now() AND o.attempts = 0
    FOR UPDATE OF o SKIP LOCKED`;
  return Object.freeze({
    claimFresh: claim('o.attempts = 0'),
    claimFreshAfter: claimAfter('o.attempts = 0'),
    claimRetry: claim('o.attempts > 0'),
    claimRuns,
    deleteIds: `DELETE FROM ${t.outbox} WHERE id = ANY($1::bigint[])`,
    payloadBytes: `SELECT id::text AS id, octet_length(payload)::int8 AS bytes
      FROM ${t.outbox} WHERE id = ANY($1::bigint[])`,
    park: `WITH reasons AS (
        SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[]) AS r(id, reason, counted)
      ), moved AS (
        DELETE FROM ${t.outbox} o USING reasons r WHERE o.id = r.id
        RETURNING o.*, r.reason, o.attempts + r.counted AS tried
      )
      INSERT INTO ${t.parked} (id, message_id, exchange, routing_key, payload, content_type, headers,
        ordering_key, correlation_id, causation_id, created_at, attempts, last_error, reason)
      SELECT id, message_id, exchange, routing_key, payload, content_type, headers, ordering_key,
        correlation_id, causation_id, created_at, tried, last_error, reason
      FROM moved`,
    scheduleRetry: `UPDATE ${t.outbox} o
      SET attempts = o.attempts + r.counted, rejections = o.rejections + r.rejected,
          last_error = r.error, available_at = now() + r.delay_ms * interval '1 millisecond'
      FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::int[], $5::int[])
        AS r(id, error, delay_ms, counted, rejected)
      WHERE o.id = r.id`,
    // A row available at 'infinity' (a sentinel written by SQL) never comes due: it is not the
    // next, and subtracting it failed every idle poll. A range, so the index still serves it.
    msUntilNextAvailable: `SELECT ceil(date_part('epoch', min(available_at) - now()) * 1000)::int8 AS ms,
        extract(epoch FROM now())::text AS now_epoch
      FROM ${t.outbox} WHERE available_at > now() AND available_at < 'infinity'`,
    listen: `LISTEN ${t.notifyChannel}`,
  });
}
