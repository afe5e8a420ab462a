import { performance } from 'node:perf_hooks';
import { isPrivilegeRefusal, isStatementNameError } from '../consumer/database-errors.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { MAX_MESSAGE_BYTES_LIMIT } from '../options/max-message-bytes.js';
import { optionNames } from '../options/option-names.js';
import { RENAMED_OPTIONS } from '../options/renamed-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { ADVISORY_LOCK_CLASS } from '../sql/advisory-locks.js';
import { outboxTables } from '../sql/outbox-tables.js';
import {
  sendsStatementNames,
  type TransactionLike,
  transactionExecutor,
} from '../sql/sql-executor.js';
import { namedStatement, statementNameOf } from '../sql/statement-names.js';
import { notMigratedError } from '../start/check-schema.js';
import { describeValue } from '../util/describe-value.js';
import { errorMessage } from '../util/logger.js';
import { positiveInteger } from '../util/positive-integer.js';
import { rejectDuplicateIds } from './duplicate-ids.js';
import { type EncodedMessage, encodeMessage } from './encode-message.js';
import type { OutboxMessage } from './outbox-message.js';

export interface OutboxWriterOptions {
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /** Largest serialized payload accepted; `add` throws an `InvalidMessageError` above it. Default 1 MiB. */
  readonly maxMessageBytes?: number | undefined;
  /**
   * Wake listening relays (`NOTIFY`) from a transaction that writes messages, at most once per
   * this many milliseconds per writer; `0` notifies from every such transaction, `false` never
   * (relays then find rows by polling). Default 20 ms.
   *
   * Postgres commits transactions that sent a NOTIFY one at a time, so notifying from every
   * transaction caps a busy service's commit rate. Rows written in between are found by relays
   * that are already awake: a relay that has just published polls again after a few
   * milliseconds, backing off towards its poll interval only while it keeps finding nothing.
   */
  readonly notifyIntervalMs?: number | false | undefined;
  /**
   * Send the INSERT as a prepared statement, which each session parses and plans once: Postgres
   * then spends about 40-110 us less a write (docs/benchmarks.md, "Issue 13, tenth part"). Only for
   * sessions that keep what they prepared: a direct connection, or PgBouncer 1.21 or later with
   * `max_prepared_statements` (on by default since 1.24); not PgBouncer in transaction mode
   * without it, nor a pool that runs `DISCARD ALL`. Applies to a Kysely transaction on
   * `PostgresDialect` (pg) and to a client of the pg outboxkit uses; an ORM adapter's transaction
   * and other clients (`pg.native`) go unnamed. Should a session have lost the statement, that
   * write fails with a `prepared-statement-lost` error (its transaction is aborted, as by any
   * failed statement) and every writer of the process sends its statements unnamed from then on.
   * Default `false`.
   */
  readonly preparedStatements?: boolean | undefined;
}

export const DEFAULT_NOTIFY_INTERVAL_MS = 20;

/**
 * Whether a session of this process has lost a prepared INSERT. What makes sessions lose them (a
 * pooler that moves sessions, resets) holds for every session, and a pg client keeps believing
 * it prepared what the session lost, which would fail one write of every other writer that uses
 * it. So one such failure sends every writer of the process unnamed, those made later too.
 */
let preparedStatementsLost = false;

/** Every option of `OutboxWriterOptions`, for the options table in docs/options.md. */
export const WRITER_OPTION_NAMES = optionNames<OutboxWriterOptions>()([
  'schema',
  'maxMessageBytes',
  'notifyIntervalMs',
  'preparedStatements',
]);

export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;

const COLUMNS =
  'message_id, exchange, routing_key, payload, content_type, headers, ordering_key, available_at, correlation_id, causation_id';

/**
 * Writes messages into the outbox inside the caller's transaction, so they commit or roll back
 * with the business rows. It never opens, commits or rolls back a transaction itself.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await writer.add(trx, { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export class OutboxWriter {
  readonly #maxMessageBytes: number;
  /** Indexed by `statementIndex`: one statement per (keyed, notifying) for one row and many. */
  readonly #insertOne: readonly InsertStatement[];
  readonly #insertMany: readonly InsertStatement[];
  /** The option; the statements go by name while no session of the process lost one. */
  readonly #prepared: boolean;
  readonly #notifyChannel: string;
  readonly #schema: string;
  readonly #notifyIntervalMs: number | false;
  /** When this writer last sent a NOTIFY (performance.now()); -Infinity: never. */
  #lastNotifyAt = Number.NEGATIVE_INFINITY;

  constructor(options: OutboxWriterOptions = {}) {
    // `new OutboxWriter('billing')` would write to the default schema without a word.
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new ConfigurationError(
        'options',
        `OutboxWriter takes an options object ({ schema: 'billing' }), got ${describeValue(options)}`,
      );
    }
    rejectUnknownOptions(options, WRITER_OPTION_NAMES, {
      owner: 'OutboxWriter',
      renames: RENAMED_OPTIONS.writer,
    });
    const { outbox, notifyChannelName, schemaName } = outboxTables(options.schema);
    this.#schema = schemaName;
    this.#notifyIntervalMs = options.notifyIntervalMs ?? DEFAULT_NOTIFY_INTERVAL_MS;
    if (
      this.#notifyIntervalMs !== false &&
      (!Number.isSafeInteger(this.#notifyIntervalMs) || this.#notifyIntervalMs < 0)
    ) {
      throw new ConfigurationError(
        'notifyIntervalMs',
        `must be false or a non-negative integer, got ${String(this.#notifyIntervalMs)}`,
      );
    }
    this.#notifyChannel = notifyChannelName;
    this.#prepared = booleanOption('preparedStatements', options.preparedStatements, false);
    this.#maxMessageBytes = positiveInteger(
      'maxMessageBytes',
      options.maxMessageBytes,
      DEFAULT_MAX_MESSAGE_BYTES,
      MAX_MESSAGE_BYTES_LIMIT,
    );
    // A delay counts from the add (clock_timestamp()), not from the start of the transaction
    // (now()), which may have been working for a while before it.
    const availableAt = (d: string) =>
      `CASE WHEN ${d} > 0 THEN clock_timestamp() + ${d} * interval '1 millisecond' ELSE now() END`;
    // The key locks and the NOTIFY ride in the INSERT as one-time filters: uncorrelated scalar
    // subqueries, which Postgres runs once before the first row is formed, so each key's lock is
    // held before any row takes its id. One round trip per `add`.
    const filters = (lockKeys: string | undefined, notifyParam: string | undefined) => {
      const conditions: string[] = [];
      // Locks are taken in hash order so two writers sharing keys cannot deadlock.
      if (lockKeys) {
        conditions.push(`(SELECT count(pg_advisory_xact_lock(${ADVISORY_LOCK_CLASS}, h)::text)
          FROM (SELECT DISTINCT hashtext(k) AS h FROM unnest(${lockKeys}) AS k ORDER BY h) AS keys) >= 0`);
      }
      if (notifyParam) conditions.push(`(SELECT pg_notify(${notifyParam}, '')::text) IS NOT NULL`);
      return conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
    };
    const one = (keyed: boolean, notify: boolean) => `INSERT INTO ${outbox} (${COLUMNS})
      SELECT $1::text, $2::text, $3::text, $4::bytea, $5::text, $6::jsonb, $7::text,
        ${availableAt('$8::bigint')}, $9::text, $10::text
      ${filters(keyed ? 'ARRAY[$7::text]' : undefined, notify ? '$11::text' : undefined)}`;
    const many = (keyed: boolean, notify: boolean) => `INSERT INTO ${outbox} (${COLUMNS})
      SELECT m, e, r, p, c, NULLIF(h, '')::jsonb, NULLIF(k, ''), ${availableAt('d')},
        NULLIF(co, ''), NULLIF(ca, '')
      FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $6::text[],
                  $7::text[], $8::bigint[], $9::text[], $10::text[])
        AS t(m, e, r, p, c, h, k, d, co, ca)
      ${filters(keyed ? '$11::text[]' : undefined, notify ? (keyed ? '$12::text' : '$11::text') : undefined)}`;
    // Named (a hash of the text) only when they may be sent by name.
    const statement = (text: string): InsertStatement =>
      Object.freeze({ text, name: this.#prepared ? statementNameOf(text) : '' });
    const variants = (build: (keyed: boolean, notify: boolean) => string) =>
      Object.freeze([
        statement(build(false, false)),
        statement(build(true, false)),
        statement(build(false, true)),
        statement(build(true, true)),
      ]);
    this.#insertOne = variants(one);
    this.#insertMany = variants(many);
  }

  /** Adds one message to the caller's transaction. Returns its message id. */
  async add(trx: TransactionLike, message: OutboxMessage): Promise<string> {
    const [id] = await this.addMany(trx, [message]);
    return id!;
  }

  /**
   * Adds messages in one INSERT, in the given order. Validates all of them before writing any.
   * Returns their message ids.
   */
  async addMany(trx: TransactionLike, messages: readonly OutboxMessage[]): Promise<string[]> {
    const executor = transactionExecutor(trx);
    if (!Array.isArray(messages)) {
      throw new ConfigurationError(
        'messages',
        `addMany takes an array of messages, got ${describeValue(messages)}; use add for one message`,
      );
    }
    // Array.from visits the holes of a sparse array, which map would skip.
    const encoded = Array.from(messages, (m, i) => encodeMessage(m, i, this.#maxMessageBytes));
    rejectDuplicateIds(encoded);
    if (encoded.length === 0) return [];

    const keys = encoded.flatMap((m) => (m.orderingKey === null ? [] : [m.orderingKey]));
    // Holding the key's lock until commit means a row of the key gets its id only after every
    // earlier writer of the key committed: id order is commit order, which the relay relies on.
    const keyed = keys.length > 0;
    // Delayed messages notify too: a waking relay learns when the next row falls due. Rows
    // written later in the interval are found by the relay's quick re-checks after a wake.
    const lastNotifyAt = this.#lastNotifyAt;
    const notify = this.#notifyDue();
    const variant = (keyed ? 1 : 0) + (notify ? 2 : 0);
    const named = this.#prepared && !preparedStatementsLost && sendsStatementNames(trx);
    const one = encoded.length === 1;
    const params = one ? rowParams(encoded[0]!) : columnParams(encoded);
    // One row locks its key through its own ordering key parameter; many take them all apart.
    if (!one && keyed) params.push(keys);
    if (notify) params.push(this.#notifyChannel);
    const { text, name } = (one ? this.#insertOne : this.#insertMany)[variant]!;
    try {
      await executor.query(named ? namedStatement(text, name, params) : text, params);
    } catch (error) {
      // The statement failed, its NOTIFY with it: the next write in the interval sends one.
      if (notify) this.#lastNotifyAt = lastNotifyAt;
      if (named && isStatementNameError(error)) {
        // The caller's transaction is aborted, so the write cannot be sent again unnamed here:
        // say so, and name no statement from now on.
        preparedStatementsLost = true;
        throw new OutboxkitError(
          'prepared-statement-lost',
          `the outbox INSERT as a prepared statement failed (${errorMessage(error)}): the session's prepared statements are not those pg prepared on it, as behind PgBouncer in transaction mode without max_prepared_statements, or after DISCARD ALL. The transaction is aborted, as by any failed statement: roll it back and run it again. Every writer of this process sends its statements unnamed from now on; set preparedStatements: false where sessions do not keep prepared statements`,
          { cause: error },
        );
      }
      // The only table the statement names is the outbox: say what to run, not pg's 42P01,
      // and which grant is missing, not pg's bare 42501.
      if (isPrivilegeRefusal(error)) {
        throw new OutboxkitError(
          'database-privilege-missing',
          `the outbox INSERT was refused (${errorMessage(error)}): the role writing needs USAGE on schema ${outboxTables(this.#schema).schema} and INSERT on its outbox (docs/operations.md, "Database roles"). The transaction is aborted, as by any failed statement`,
          { cause: error },
        );
      }
      throw notMigratedError(error, this.#schema, 'before writing') ?? error;
    }
    return encoded.map((m) => m.messageId);
  }

  /**
   * Whether this write should wake the relays. The interval is counted from when the NOTIFY is
   * sent, not committed: a notifying transaction that rolls back leaves the rows written in the
   * next interval to the relays' polling.
   */
  #notifyDue(): boolean {
    if (this.#notifyIntervalMs === false) return false;
    const now = performance.now();
    if (now - this.#lastNotifyAt < this.#notifyIntervalMs) return false;
    this.#lastNotifyAt = now;
    return true;
  }
}

/** One of the writer's INSERTs, and the name it goes by when sent as a prepared statement. */
interface InsertStatement {
  readonly text: string;
  readonly name: string;
}

function rowParams(m: EncodedMessage): unknown[] {
  return [
    m.messageId,
    m.exchange,
    m.routingKey,
    m.payload,
    m.contentType,
    m.headers,
    m.orderingKey,
    m.delayMs,
    m.correlationId,
    m.causationId,
  ];
}

/**
 * The parameters of `addMany`: one array per column of `rowParams`. A null (a missing header
 * set, ordering key, correlation or causation id: nothing else can be null, and none of these
 * can be empty) goes as an empty string, which the INSERT's NULLIF makes null again: an array's
 * NULL is read as the text "NULL" under `array_nulls = off`, which gave every message the
 * ordering key "NULL".
 */
function columnParams(messages: readonly EncodedMessage[]): unknown[] {
  const columns: unknown[][] = Array.from({ length: 10 }, () => []);
  for (const m of messages) {
    rowParams(m).forEach((value, i) => {
      columns[i]!.push(value ?? '');
    });
  }
  return columns;
}
