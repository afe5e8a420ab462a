import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { pgQueryable } from '../options/database-handle.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { sayingNotMigrated } from '../start/check-schema.js';
import { durationMs } from '../util/duration-option.js';
import { pollUntil } from './poll-until.js';

export interface FlushOutboxOptions {
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /** Give up after this long. Default 10 s. */
  readonly timeoutMs?: number | undefined;
  /**
   * A relay to wake, so the flush does not wait for its poll (when LISTEN is off). It must be
   * running: `flushOutbox` does not publish anything itself. Its schema is the flush's when
   * `schema` is left out.
   */
  readonly relay?: FlushableRelay | undefined;
  /**
   * Throw an `OutboxFlushError` when rows were parked while flushing, instead of counting a
   * parked row as flushed. Default true: a test asserting on what was published would
   * otherwise fail later and less clearly.
   */
  readonly failOnParked?: boolean | undefined;
}

/** What `flushOutbox` uses of an `OutboxRelay`. */
export interface FlushableRelay {
  wake(): void;
  readonly options?: { readonly schema?: string | undefined } | undefined;
}

/** Every option of `FlushOutboxOptions`. */
export const FLUSH_OUTBOX_OPTION_NAMES = optionNames<FlushOutboxOptions>()([
  'schema',
  'timeoutMs',
  'relay',
  'failOnParked',
]);

/** One row `flushOutbox` found parked: which message, where to, and why. */
export interface ParkedRowSummary {
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  /** Why it was parked, e.g. `unroutable: 312 NO_ROUTE`. */
  readonly reason: string;
}

/** Rows were parked while `flushOutbox` waited: they will not be published. */
export class OutboxFlushError extends OutboxkitError {
  /** The reasons of the rows parked meanwhile, e.g. `unroutable: 312 NO_ROUTE`. */
  readonly reasons: readonly string[];
  /** The rows themselves (at most 10), so a test can tell whose write it was. */
  readonly rows: readonly ParkedRowSummary[];

  constructor(rows: readonly ParkedRowSummary[]) {
    const described = rows.map(
      (r) =>
        `message ${JSON.stringify(r.messageId)} to exchange ${JSON.stringify(r.exchange)} with routing key ${JSON.stringify(r.routingKey)}: ${r.reason}`,
    );
    super(
      'outbox-rows-parked',
      `${rows.length} outbox row(s) were parked instead of published: ${described.join('; ')}. ` +
        'Declare the exchange and bind a queue before writing, or pass failOnParked: false',
    );
    this.rows = rows;
    this.reasons = rows.map((r) => r.reason);
  }
}

/**
 * Waits until a running relay has published everything in the outbox: polls the table until
 * it is empty, so it returns as soon as the last row is confirmed and deleted, with no sleeps.
 * Rows written with a delay are waited for too.
 *
 * @example
 * await db.transaction().execute((trx) => outbox.add(trx, message));
 * await flushOutbox(pool, { schema: 'outboxkit' });
 * // every message written above is now confirmed by RabbitMQ
 */
export async function flushOutbox(
  pool: PgQueryable,
  flushOptions?: FlushOutboxOptions,
): Promise<void> {
  pgQueryable('pool', pool);
  const options = optionsObject('options', flushOptions, FLUSH_OUTBOX_OPTION_NAMES, 'flushOutbox');
  const timeoutMs = durationMs('timeoutMs', options.timeoutMs, 10_000);
  // `{}` would be taken for a relay and fail at wake() after the first statement ran.
  const relay = options.relay as { wake?: unknown } | undefined;
  if (relay === undefined && 'relay' in options && options.schema === undefined) {
    // `{ relay: outbox.relay! }` before the module's init(): the default schema's empty outbox
    // would pass at once, whatever the module's schema holds.
    throw new ConfigurationError(
      'relay',
      "is undefined, and no schema is given: the flush cannot tell which outbox to watch. Pass a running relay (in Nest, OutboxService.relay is there once app.init() ran, unless relay: false) or the schema, or leave the key out for the schema 'outboxkit'",
    );
  }
  if (relay !== undefined && (typeof relay !== 'object' || typeof relay.wake !== 'function')) {
    throw new ConfigurationError('relay', 'must be a running OutboxRelay (an object with wake())');
  }
  const t = outboxTables(flushSchema(options));
  const failOnParked = booleanOption('failOnParked', options.failOnParked, true);
  // What could be parked during the flush: rows pending now, and rows written after now (with
  // higher ids). Timestamps would not do: parked_at is the parking transaction's start.
  const mark = await sayingNotMigrated(pool, t.schemaName).query(
    `SELECT coalesce(array_agg(id::text), '{}') AS pending,
            greatest((SELECT max(id) FROM ${t.outbox}), (SELECT max(id) FROM ${t.parked}), 0)::text AS high
     FROM ${t.outbox}`,
  );
  const { pending: pendingIds, high } = mark.rows[0] as { pending: string[]; high: string };
  let pending = -1;
  let lastErrors: readonly string[] = [];
  let notDue = 0;
  let nextDue: string | null = null;
  options.relay?.wake();
  await pollUntil(
    'the outbox to be empty',
    timeoutMs,
    async () => {
      // The rows' last errors tell a relay that tries and fails (an exchange not declared: put
      // off, never parked) from no relay at all; rows not due yet, from both.
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n, array(SELECT DISTINCT last_error FROM ${t.outbox}
           WHERE last_error IS NOT NULL ORDER BY last_error LIMIT 3) AS errors,
           count(*) FILTER (WHERE available_at > now() AND last_error IS NULL)::int AS not_due,
           to_char(min(available_at) FILTER (WHERE available_at > now() AND last_error IS NULL)
             AT TIME ZONE 'UTC',
             'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS next_due
         FROM ${t.outbox}`,
      );
      const row = rows[0] as {
        n: unknown;
        errors: string[];
        not_due: unknown;
        next_due: string | null;
      };
      // A number whatever the pool parses int4 to (it may be the application's).
      pending = Number(row.n);
      lastErrors = row.errors;
      notDue = Number(row.not_due);
      nextDue = row.next_due;
      return pending === 0 ? true : undefined;
    },
    () => {
      const waiting =
        notDue > 0 ? `, ${notDue} of them not due until ${nextDue} (written with delayMs)` : '';
      if (lastErrors.length > 0) {
        return `${pending} row(s) still pending${waiting}, last error: ${lastErrors.join('; ')}`;
      }
      return notDue === pending
        ? `${pending} row(s) still pending${waiting}: give timeoutMs past that, or write them without delayMs in the test`
        : `${pending} row(s) still pending${waiting}; is a relay running on schema "${t.schemaName}"?`;
    },
  );
  // Rows written after the previous flush (of this pool and schema, in this process) and
  // parked before this one began count too: the relay may be quicker than the test's call.
  const since = watermarkOf(pool, t.schemaName);
  const { rows } = await pool.query(
    `SELECT array(SELECT json_build_object('messageId', message_id, 'exchange', exchange,
                    'routingKey', routing_key, 'reason', reason)::text FROM ${t.parked}
             WHERE id = ANY($1::bigint[]) OR id > $2::bigint
                OR ($3::bigint IS NOT NULL AND id > $3::bigint)
                OR ($3::bigint IS NULL AND parked_at >= now() - make_interval(secs => $4::float8))
             ORDER BY id LIMIT 10) AS parked,
            greatest((SELECT max(id) FROM ${t.parked}), $2::bigint)::text AS high`,
    [pendingIds, high, since ?? null, process.uptime()],
  );
  // As JSON text: the application's pool may parse json its own way, or not at all.
  const found = rows[0] as { parked: string[]; high: string };
  setWatermark(pool, t.schemaName, found.high);
  if (failOnParked && found.parked.length > 0) {
    throw new OutboxFlushError(found.parked.map((row) => JSON.parse(row) as ParkedRowSummary));
  }
}

/**
 * The highest outbox id each earlier flush saw, by pool and schema: a later flush reports the
 * rows parked above it. Before a process's first flush, rows parked since the process started.
 */
const watermarks = new WeakMap<object, Map<string, string>>();

function watermarkOf(pool: PgQueryable, schema: string): string | undefined {
  return watermarks.get(pool)?.get(schema);
}

function setWatermark(pool: PgQueryable, schema: string, high: string): void {
  let bySchema = watermarks.get(pool);
  if (bySchema === undefined) {
    bySchema = new Map();
    watermarks.set(pool, bySchema);
  }
  bySchema.set(schema, high);
}

/**
 * The schema to watch: the one given, else the relay's. Watching another schema than the
 * relay's would find it empty at once and return without waiting for anything.
 */
function flushSchema(options: FlushOutboxOptions): string | undefined {
  const relaySchema = options.relay?.options?.schema;
  if (typeof relaySchema !== 'string') return options.schema;
  if (options.schema !== undefined && options.schema !== relaySchema) {
    throw new ConfigurationError(
      'schema',
      `is ${JSON.stringify(options.schema)}, but the relay publishes the outbox of schema ${JSON.stringify(relaySchema)}: the flush would watch a table the relay does not empty`,
    );
  }
  return relaySchema;
}
