import { outboxTables } from '../sql/outbox-tables.js';
import type { DeadLetterFilter } from './dead-letter-filter.js';

// Times as epoch milliseconds and headers as text: the pool is the application's, whose type
// parsers may leave a timestamptz or a jsonb a string (ParkedMessages makes Dates and objects).
// The milliseconds as int8: a float8's text follows the session's extra_float_digits.
// created_at within a JS Date's range (+-8.64e15 ms): a row written by SQL at +-infinity (parked
// for it) failed the whole listing ("bigint out of range"), and makes the earliest or latest Date.
const SUMMARY_COLUMNS = `id::text AS id, message_id, exchange, routing_key, content_type,
  headers::text AS headers, ordering_key, correlation_id, causation_id,
  least(greatest(date_part('epoch', created_at) * 1000, -8.64e15), 8.64e15)::int8 AS created_at_ms,
  attempts, last_error, reason,
  (date_part('epoch', parked_at) * 1000)::int8 AS parked_at_ms, octet_length(payload) AS payload_bytes`;

/**
 * The most payload read in one row: pg reads a bytea as hex text, two characters a byte, and a
 * JS string holds at most 2^29 - 24 characters, so a larger payload would crash the process in
 * pg's parser. Postgres allows payloads of up to 1 GB, which only SQL can write.
 */
export const PAYLOAD_PART_BYTES = 64 * 1024 * 1024;

const OUTBOX_COLUMNS = `id, message_id, exchange, routing_key, payload, content_type, headers,
  ordering_key, correlation_id, causation_id, created_at`;

/** A WHERE clause and its parameters, numbered from `$1`. */
export interface FilterSql {
  readonly where: string;
  readonly params: unknown[];
}

/** Escapes LIKE wildcards, so a reason filter is a plain substring. */
function likeSubstring(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Turns a filter (and optional row ids) into SQL over `outbox_parked`, with parameters. */
export function filterSql(filter: DeadLetterFilter, ids?: readonly string[]): FilterSql {
  const params: unknown[] = [];
  const clauses: string[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (ids !== undefined) clauses.push(`id = ANY(${param(ids)}::bigint[])`);
  if (filter.exchange !== undefined) clauses.push(`exchange = ${param(filter.exchange)}`);
  if (filter.messageId !== undefined) clauses.push(`message_id = ${param(filter.messageId)}`);
  if (filter.reason !== undefined) {
    const p = param(likeSubstring(filter.reason));
    clauses.push(`(reason ILIKE ${p} OR coalesce(last_error, '') ILIKE ${p})`);
  }
  // Ages by the database's clock, the one parked_at was set by.
  if (filter.olderThanMs !== undefined) {
    clauses.push(`parked_at <= now() - ${param(filter.olderThanMs)} * interval '1 millisecond'`);
  }
  if (filter.newerThanMs !== undefined) {
    clauses.push(`parked_at >= now() - ${param(filter.newerThanMs)} * interval '1 millisecond'`);
  }
  return { where: clauses.length === 0 ? 'true' : clauses.join(' AND '), params };
}

/** The SQL of the parked-row operations for one schema. */
export interface ParkedQueries {
  list(f: FilterSql, limit: number): { text: string; params: unknown[] };
  show: string;
  /** Parameters: the row's id, and the part's first byte, from 1. */
  payloadPart: string;
  count(f: FilterSql): { text: string; params: unknown[] };
  replay(f: FilterSql, limit: number): { text: string; params: unknown[] };
  purge(f: FilterSql, limit: number): { text: string; params: unknown[] };
}

export function parkedQueries(schemaName: string): ParkedQueries {
  const t = outboxTables(schemaName);
  // Rows another replay or purge holds are skipped, not waited for: two operators running the
  // same replay split the rows instead of replaying them twice.
  const pick = (f: FilterSql, limit: number) =>
    `SELECT id FROM ${t.parked} WHERE ${f.where} ORDER BY id LIMIT ${limit}
     FOR UPDATE SKIP LOCKED`;
  return {
    list: (f, limit) => ({
      // Qualified: a bare `id` would be the output column, `id::text`, and sort 10 before 2.
      text: `SELECT ${SUMMARY_COLUMNS} FROM ${t.parked} WHERE ${f.where} ORDER BY ${t.parked}.id LIMIT ${limit}`,
      params: f.params,
    }),
    // A larger payload comes in parts (`payloadPart`): see `PAYLOAD_PART_BYTES`.
    show: `SELECT ${SUMMARY_COLUMNS},
        CASE WHEN octet_length(payload) <= ${PAYLOAD_PART_BYTES} THEN payload END AS payload
      FROM ${t.parked} WHERE id = $1::bigint`,
    payloadPart: `SELECT substring(payload FROM $2::int FOR ${PAYLOAD_PART_BYTES}) AS part
      FROM ${t.parked} WHERE id = $1::bigint`,
    count: (f) => ({
      text: `SELECT count(*)::int AS n FROM ${t.parked} WHERE ${f.where}`,
      params: f.params,
    }),
    // One statement, so each row moves atomically. The row keeps its id: claims go by
    // (available_at, id) and an ordering key's head is its lowest id, so a replayed row goes
    // before later rows of its key that are still waiting, as it would have without parking.
    // The id is free: it left the outbox when the row was parked.
    replay: (f, limit) => ({
      text: `WITH moved AS (
          DELETE FROM ${t.parked} WHERE id IN (${pick(f, limit)})
          RETURNING ${OUTBOX_COLUMNS}
        )
        INSERT INTO ${t.outbox} (${OUTBOX_COLUMNS}, available_at, attempts, last_error)
        OVERRIDING SYSTEM VALUE
        SELECT ${OUTBOX_COLUMNS}, now(), 0, NULL FROM moved
        RETURNING id::text AS id`,
      params: f.params,
    }),
    purge: (f, limit) => ({
      text: `DELETE FROM ${t.parked} WHERE id IN (${pick(f, limit)}) RETURNING id::text AS id`,
      params: f.params,
    }),
  };
}
