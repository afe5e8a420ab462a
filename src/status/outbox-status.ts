import { booleanOption } from '../options/boolean-option.js';
import { pgQueryable } from '../options/database-handle.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { notMigratedError } from '../start/check-schema.js';

export interface OutboxStatusOptions {
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /**
   * Also count the processed-messages table. Off by default: it is an exact `count(*)` over a
   * table that only grows until retention trims it, too slow to run on every metrics scrape.
   */
  readonly includeProcessed?: boolean | undefined;
}

/** Counts of the outbox for one exchange, or for all of them. */
export interface OutboxCounts {
  /** Rows not yet published: waiting, in flight, delayed or waiting for a retry. */
  readonly pending: number;
  /**
   * Of `pending`, the rows written with `delayMs` whose time has not come (never tried yet):
   * not a backlog. A service that schedules messages hours ahead has that many pending rows
   * with a relay that keeps up; `pending - scheduled` is what waits for the relay.
   */
  readonly scheduled: number;
  /**
   * The relay's lag: how long the oldest due row has waited, in seconds; `null` when no row is
   * due. A row is due from its `available_at`: a message delayed (`delayMs`) or scheduled for
   * later does not count before its time, and counts from that time, not from its write. A row
   * that failed and waits to be tried again (a retry, or an exchange that does not exist yet)
   * counts from its write, since it was due before its first try.
   */
  readonly oldestPendingAgeSeconds: number | null;
  /** Pending rows that failed at least once, or were put off (their exchange missing), and wait to be tried again. */
  readonly retrying: number;
  /** Rows moved to the parked table: they will not be published without a replay. */
  readonly parked: number;
}

/** The counts of one exchange. */
export interface ExchangeStatus extends OutboxCounts {
  readonly exchange: string;
  /**
   * Why rows of this exchange are retrying: the error recorded on the newest pending row that
   * failed; `null` when no pending row has failed.
   */
  readonly lastError: string | null;
}

/** What `outboxStatus` returns; also the JSON that `outboxkit status --json` prints. */
export interface OutboxStatus {
  readonly schema: string;
  /** Every exchange with pending or parked rows, by name. */
  readonly exchanges: readonly ExchangeStatus[];
  readonly total: OutboxCounts;
  /** Rows of the processed-messages table; only with `includeProcessed`. */
  readonly processed?: number | undefined;
}

interface StatusRow {
  exchange: string;
  pending: string;
  retrying: string;
  scheduled: string;
  parked: string;
  oldest_age: string | null;
  last_error: string | null;
}

/**
 * Builds the status query for one schema. One statement, so every count comes from one snapshot:
 * a row the relay parks between two reads cannot be counted twice or not at all. A row written by
 * SQL at +-infinity has no age (the relay parks it). Its text before the parked table stays under
 * 1 kB, what `pg_stat_activity` shows of a statement by default (`track_activity_query_size`), so
 * that a status read waiting on that table can be seen there for what it is.
 */
function statusQuery(schemaName: string | undefined): string {
  const t = outboxTables(schemaName);
  // Lag is about rows that could have gone: not those delayed until later. A row that was
  // tried (last_error is set by every retry, counted as an attempt or not) was due before its
  // first try; its available_at is the next try's time. Scheduled: delayed and never tried.
  return `WITH pending AS (
      SELECT exchange,
             count(*) AS pending,
             count(*) FILTER (WHERE attempts > 0 OR last_error IS NOT NULL) AS retrying,
             count(*) FILTER (WHERE attempts = 0 AND last_error IS NULL AND available_at > now())
               AS scheduled,
             min(CASE WHEN NOT isfinite(created_at) THEN NULL
                      WHEN attempts > 0 OR last_error IS NOT NULL THEN created_at
                      WHEN available_at <= now() THEN greatest(created_at, available_at)
                 END) AS oldest,
             max(id) FILTER (WHERE last_error IS NOT NULL) AS last_failed_id
      FROM ${t.outbox}
      GROUP BY exchange
    ), parked AS (
      SELECT exchange, count(*) AS parked FROM ${t.parked} GROUP BY exchange
    )
    SELECT exchange,
           coalesce(p.pending, 0)::text AS pending,
           coalesce(p.retrying, 0)::text AS retrying,
           coalesce(p.scheduled, 0)::text AS scheduled,
           coalesce(k.parked, 0)::text AS parked,
           -- The database's clock, the one the row's times were set by, so client skew cannot show.
           -- As numeric text: a float8's follows the session's extra_float_digits.
           round(extract(epoch FROM now() - p.oldest)::numeric, 3)::text AS oldest_age,
           -- One row by its key per exchange: cheap, and an error is what a retrying count needs.
           (SELECT f.last_error FROM ${t.outbox} f WHERE f.id = p.last_failed_id) AS last_error
    FROM pending p FULL JOIN parked k USING (exchange)
    ORDER BY exchange`;
}

/**
 * Reports how far behind the relay is: pending, the age of the oldest due row, retrying,
 * scheduled (delayed, not due yet) and parked rows,
 * per exchange and in total. Reads with one statement (two with `includeProcessed`).
 *
 * @example
 * const status = await outboxStatus(pool, { schema: 'outboxkit' });
 * if ((status.total.oldestPendingAgeSeconds ?? 0) > 60) alert('outbox relay is lagging');
 */
export async function outboxStatus(
  pool: PgQueryable,
  options?: OutboxStatusOptions,
): Promise<OutboxStatus> {
  pgQueryable('pool', pool);
  const { schema, includeProcessed: includeProcessedOption } = optionsObject(
    'options',
    options,
    STATUS_OPTION_NAMES,
    'outboxStatus',
  );
  const includeProcessed = booleanOption('includeProcessed', includeProcessedOption, false);
  const tables = outboxTables(schema);
  let rows: unknown[];
  try {
    ({ rows } = await pool.query(statusQuery(schema)));
  } catch (error) {
    // What `outboxkit status` says for the same case, rather than pg's bare 42P01.
    throw notMigratedError(error, tables.schemaName, 'first') ?? error;
  }
  // Counts travel as text: count(*) is a bigint, which pg would otherwise hand over as a string.
  const exchanges = (rows as StatusRow[]).map((r) => ({
    exchange: r.exchange,
    pending: Number(r.pending),
    // A row written by a transaction that began after this statement is a hair in the future.
    oldestPendingAgeSeconds: r.oldest_age === null ? null : Math.max(0, Number(r.oldest_age)),
    retrying: Number(r.retrying),
    scheduled: Number(r.scheduled),
    parked: Number(r.parked),
    lastError: r.last_error,
  }));
  const status: OutboxStatus = {
    schema: tables.schemaName,
    exchanges,
    total: totalOf(exchanges),
  };
  if (!includeProcessed) return status;
  const processed = await pool.query(`SELECT count(*)::text AS n FROM ${tables.processed}`);
  return { ...status, processed: Number((processed.rows[0] as { n: string }).n) };
}

function totalOf(exchanges: readonly ExchangeStatus[]): OutboxCounts {
  let pending = 0;
  let retrying = 0;
  let scheduled = 0;
  let parked = 0;
  let oldest: number | null = null;
  for (const e of exchanges) {
    pending += e.pending;
    retrying += e.retrying;
    scheduled += e.scheduled;
    parked += e.parked;
    if (e.oldestPendingAgeSeconds !== null) {
      oldest = Math.max(oldest ?? 0, e.oldestPendingAgeSeconds);
    }
  }
  return { pending, scheduled, oldestPendingAgeSeconds: oldest, retrying, parked };
}

/** Every option of `OutboxStatusOptions`, for the options table in docs/options.md. */
export const STATUS_OPTION_NAMES = optionNames<OutboxStatusOptions>()([
  'schema',
  'includeProcessed',
]);
