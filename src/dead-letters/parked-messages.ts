import { ConfigurationError } from '../errors/configuration-error.js';
import { optionNames } from '../options/option-names.js';
import { RENAMED_OPTIONS } from '../options/renamed-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { byteaBuffer } from '../sql/bytea-buffer.js';
import { DEFAULT_SCHEMA } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { sayingNotMigrated } from '../start/check-schema.js';
import { positiveInteger } from '../util/positive-integer.js';
import type { HeaderValue } from '../writer/outbox-message.js';
import { checkFilter, type DeadLetterFilter } from './dead-letter-filter.js';
import { DeadLetterNotFoundError } from './dead-letter-not-found-error.js';
import {
  filterSql,
  PAYLOAD_PART_BYTES,
  type ParkedQueries,
  parkedQueries,
} from './parked-queries.js';
import { isParkedRowId } from './parked-row-id.js';
import type { DeadLetterWorkResult, ProgressListener } from './replay-result.js';
import { workOptions } from './work-options.js';

export interface ParkedMessagesOptions {
  /** A pg `Pool` (or client) on the database of the outbox. Not closed by `ParkedMessages`. */
  readonly pool: PgQueryable;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
}

/** Every option of `ParkedMessagesOptions`, for the options table in docs/options.md. */
export const PARKED_MESSAGES_OPTION_NAMES = optionNames<ParkedMessagesOptions>()([
  'pool',
  'schema',
]);

/** An outbox row the relay parked: it will not be published unless replayed. */
export interface ParkedMessage {
  /** The row id, kept through parking and replay. */
  readonly id: string;
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, HeaderValue>> | null;
  readonly orderingKey: string | null;
  readonly correlationId: string | null;
  readonly causationId: string | null;
  readonly createdAt: Date;
  /**
   * Failed publish attempts counted against `retry.maxAttempts`, the one that parked it
   * included: a row parked as `returned 6 times` shows 6.
   */
  readonly attempts: number;
  readonly lastError: string | null;
  /** Why it was parked, e.g. `unroutable: 312 NO_ROUTE`. */
  readonly reason: string;
  readonly parkedAt: Date;
  readonly payloadBytes: number;
}

/** A parked row with its payload, from `show`. */
export interface ParkedMessageDetail extends ParkedMessage {
  readonly payload: Buffer;
}

/** Options of `list`. */
export interface ListOptions {
  /** At most this many, oldest first. Default 100. */
  readonly limit?: number | undefined;
}

/** Options of `replay` and `purge` over many rows. */
export interface BulkOptions {
  /** Called after each chunk with the counts so far. */
  readonly onProgress?: ProgressListener | undefined;
  /** Rows moved per statement. Default 500. */
  readonly chunkSize?: number | undefined;
}

const BULK_OPTION_NAMES = optionNames<BulkOptions>()(['onProgress', 'chunkSize']);

interface ParkedRow {
  id: string;
  message_id: string;
  exchange: string;
  routing_key: string;
  content_type: string;
  /** jsonb as text. */
  headers: string | null;
  ordering_key: string | null;
  correlation_id: string | null;
  causation_id: string | null;
  created_at_ms: number | string;
  attempts: number;
  last_error: string | null;
  reason: string;
  parked_at_ms: number | string;
  payload_bytes: number;
  payload?: Buffer | null;
}

/**
 * Lists, shows, replays and purges parked outbox rows. A replay moves the row back into the
 * outbox in one statement with its id, message id and ordering key, and with no attempts
 * made, so the relay publishes it like a new row and consumers still dedupe it by message id.
 *
 * @example
 * const parked = new ParkedMessages({ pool, schema: 'outboxkit' });
 * const unroutable = await parked.list({ reason: 'unroutable' });
 * await parked.replay({ reason: 'unroutable', exchange: 'orders' });
 */
export class ParkedMessages {
  readonly schema: string;
  readonly #pool: PgQueryable;
  readonly #queries: ParkedQueries;

  constructor(options: ParkedMessagesOptions) {
    rejectUnknownOptions(options, PARKED_MESSAGES_OPTION_NAMES, {
      owner: 'ParkedMessages',
      renames: RENAMED_OPTIONS.parkedMessages,
    });
    if (!options?.pool || typeof options.pool.query !== 'function') {
      throw new ConfigurationError('pool', 'must be a pg Pool or client');
    }
    this.schema = options.schema ?? DEFAULT_SCHEMA;
    this.#queries = parkedQueries(this.schema);
    // A schema without outboxkit's tables is said as the CLI says it.
    this.#pool = sayingNotMigrated(options.pool, this.schema);
  }

  /** Parked rows matching `filter`, oldest first. */
  async list(filter: DeadLetterFilter = {}, listOptions?: ListOptions): Promise<ParkedMessage[]> {
    const options = workOptions(listOptions, ['limit'], 'ParkedMessages.list');
    const q = this.#queries.list(
      filterSql(checkFilter(filter)),
      positiveInteger('limit', options.limit, 100),
    );
    const { rows } = await this.#pool.query(q.text, q.params);
    return (rows as ParkedRow[]).map(toMessage);
  }

  /** How many parked rows match `filter`. */
  async count(filter: DeadLetterFilter = {}): Promise<number> {
    const q = this.#queries.count(filterSql(checkFilter(filter)));
    const { rows } = await this.#pool.query(q.text, q.params);
    // A number whatever the pool parses int4 to.
    return Number((rows[0] as { n: unknown }).n);
  }

  /** One parked row with its payload; throws `DeadLetterNotFoundError` when there is none. */
  async show(id: string): Promise<ParkedMessageDetail> {
    const { rows } = await this.#pool.query(this.#queries.show, [rowId(id)]);
    const row = rows[0] as ParkedRow | undefined;
    if (!row) throw new DeadLetterNotFoundError(id, this.#where());
    const message = toMessage(row);
    const payload =
      row.payload === null ? await this.#payloadInParts(id, message.payloadBytes) : row.payload;
    return { ...message, payload: byteaBuffer(payload) };
  }

  /** A payload too large to read in one piece (`PAYLOAD_PART_BYTES`). */
  async #payloadInParts(id: string, bytes: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let from = 1; from <= bytes; from += PAYLOAD_PART_BYTES) {
      const { rows } = await this.#pool.query(this.#queries.payloadPart, [rowId(id), from]);
      const row = rows[0] as { part: unknown } | undefined;
      // Replayed or purged meanwhile.
      if (!row) throw new DeadLetterNotFoundError(id, this.#where());
      parts.push(byteaBuffer(row.part));
    }
    return Buffer.concat(parts);
  }

  /** Moves one parked row back into the outbox; throws `DeadLetterNotFoundError` if it is gone. */
  async replayOne(id: string): Promise<void> {
    await this.#one((f, n) => this.#queries.replay(f, n), id);
  }

  /**
   * Moves every parked row matching `filter` back into the outbox (all of them with `{}`), in
   * chunks of one statement each. Rows parked while it runs may be moved too.
   */
  async replay(filter: DeadLetterFilter, options?: BulkOptions): Promise<DeadLetterWorkResult> {
    const checked = workOptions(options, BULK_OPTION_NAMES, 'ParkedMessages.replay');
    return this.#chunked((f, n) => this.#queries.replay(f, n), filter, checked);
  }

  /** Deletes one parked row for good; throws `DeadLetterNotFoundError` if it is gone. */
  async purgeOne(id: string): Promise<void> {
    await this.#one((f, n) => this.#queries.purge(f, n), id);
  }

  /** Deletes every parked row matching `filter` for good (all of them with `{}`). */
  async purge(filter: DeadLetterFilter, options?: BulkOptions): Promise<DeadLetterWorkResult> {
    const checked = workOptions(options, BULK_OPTION_NAMES, 'ParkedMessages.purge');
    return this.#chunked((f, n) => this.#queries.purge(f, n), filter, checked);
  }

  /** Runs `query` on the one row `id`; throws `DeadLetterNotFoundError` when it is gone. */
  async #one(query: ParkedQueries['purge'], id: string): Promise<void> {
    const q = query(filterSql({}, [rowId(id)]), 1);
    const { rows } = await this.#pool.query(q.text, q.params);
    if (rows.length === 0) throw new DeadLetterNotFoundError(id, this.#where());
  }

  async #chunked(
    query: ParkedQueries['purge'],
    filter: DeadLetterFilter,
    options: BulkOptions,
  ): Promise<DeadLetterWorkResult> {
    const f = filterSql(checkFilter(filter, true));
    const chunk = positiveInteger('chunkSize', options.chunkSize, 500);
    let done = 0;
    for (;;) {
      const q = query(f, chunk);
      const { rows } = await this.#pool.query(q.text, q.params);
      done += rows.length;
      if (rows.length > 0) options.onProgress?.(done, 0);
      // Fewer than a chunk: nothing more matched, apart from rows another replay holds.
      if (rows.length < chunk) return { done, failed: [] };
    }
  }

  #where(): string {
    return `${this.schema}.outbox_parked`;
  }
}

function rowId(id: string): string {
  if (!isParkedRowId(String(id))) {
    throw new ConfigurationError(
      'id',
      `a parked row id is a number up to 2^63 - 1, got ${JSON.stringify(id)}`,
    );
  }
  return String(id);
}

function toMessage(r: ParkedRow): ParkedMessage {
  return {
    id: r.id,
    messageId: r.message_id,
    exchange: r.exchange,
    routingKey: r.routing_key,
    contentType: r.content_type,
    headers: r.headers === null ? null : (JSON.parse(r.headers) as Record<string, HeaderValue>),
    orderingKey: r.ordering_key,
    correlationId: r.correlation_id,
    causationId: r.causation_id,
    createdAt: new Date(Number(r.created_at_ms)),
    attempts: r.attempts,
    lastError: r.last_error,
    reason: r.reason,
    parkedAt: new Date(Number(r.parked_at_ms)),
    payloadBytes: Number(r.payload_bytes),
  };
}
