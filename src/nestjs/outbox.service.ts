import { Inject, Injectable } from '@nestjs/common';
import type { MessageInfo } from '../consumer/consumer-definition.js';
import type { ConsumerHost } from '../consumer/consumer-host.js';
import type { ConsumerTopology } from '../consumer/consumer-topology.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { optionNames } from '../options/option-names.js';
import type { OutboxRelay } from '../relay/outbox-relay.js';
import type { TransactionLike } from '../sql/sql-executor.js';
import type { OutboxStatus } from '../status/outbox-status.js';
import { describeValue } from '../util/describe-value.js';
import { rejectUnknownFields } from '../writer/message-fields.js';
import type { HeaderValue, OutboxMessage } from '../writer/outbox-message.js';
import type { OutboxWriter } from '../writer/outbox-writer.js';
import type { MessageDefinition, WrittenPayloadOf } from './message-definition.js';
import { OutboxRuntime } from './outbox-runtime.js';

/** Per-message settings of `OutboxService.add`. */
export interface OutboxWriteOptions {
  /** Defaults to a new UUIDv7. */
  readonly messageId?: string | undefined;
  /** Overrides the key the definition derives with its `orderingKey`. */
  readonly orderingKey?: string | undefined;
  readonly headers?: Readonly<Record<string, HeaderValue>> | undefined;
  /** Milliseconds to wait after commit before publishing. */
  readonly delayMs?: number | undefined;
  readonly correlationId?: string | undefined;
  readonly causationId?: string | undefined;
  /** Overrides the definition's `contentType` (JSON when neither gives one). */
  readonly contentType?: string | undefined;
  /**
   * The message being handled, when a handler writes a follow-up: its message id becomes the
   * causation id, and its correlation id (or, lacking one, its message id) is carried on.
   */
  readonly causedBy?: Pick<MessageInfo, 'messageId' | 'correlationId'> | undefined;
}

/** Every field of `OutboxWriteOptions`. */
const WRITE_OPTION_NAMES = optionNames<OutboxWriteOptions>()([
  'messageId',
  'orderingKey',
  'headers',
  'delayMs',
  'correlationId',
  'causationId',
  'contentType',
  'causedBy',
]);
const MANY_WRITE_OPTION_NAMES = WRITE_OPTION_NAMES.filter((name) => name !== 'messageId');

/** The caller's transaction: a Kysely transaction, or a pg client after `BEGIN`. */
export type OutboxTransaction = TransactionLike;

/**
 * Writes messages into the outbox in the caller's transaction, typed by their definitions, and
 * tells how the relay and the handlers of this application are doing.
 *
 * @example
 * ```ts
 * await this.db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await this.outbox.add(trx, OrderPlaced, { orderId: order.id, sku: order.sku, quantity: 1 });
 * });
 * ```
 */
@Injectable()
export class OutboxService {
  readonly #runtime: OutboxRuntime;

  constructor(@Inject(OutboxRuntime) runtime: OutboxRuntime) {
    this.#runtime = runtime;
  }

  /**
   * Adds one message to the caller's transaction (a Kysely transaction, a pg client after
   * `BEGIN`, or an ORM's transaction through its adapter, such as `typeormTransaction(manager)`);
   * it is published once that transaction commits, and never if it rolls back. Without a
   * transaction, it joins the module's `ambientTransaction` (the one of nestjs-cls's
   * `@Transactional()`, with `clsOutbox`). Returns the message id.
   */
  // The transaction-first form last: a compiler that reports only the last overload's error
  // (TypeScript 7) then names a wrong payload's field rather than the missing transaction.
  async add<M extends MessageDefinition>(
    message: M,
    payload: WrittenPayloadOf<M>,
    options?: OutboxWriteOptions,
  ): Promise<string>;
  async add<M extends MessageDefinition>(
    trx: OutboxTransaction,
    message: M,
    payload: WrittenPayloadOf<M>,
    options?: OutboxWriteOptions,
  ): Promise<string>;
  async add(...args: unknown[]): Promise<string> {
    const [trx, message, payload, options] = this.#transactionOf(args);
    const checked = writeOptions(options, WRITE_OPTION_NAMES, 'OutboxService.add');
    return this.#written(
      this.#runtime.writer.add(trx, this.#message(message as MessageDefinition, payload, checked)),
    );
  }

  /**
   * Adds several messages of one definition in one statement, in order, to the caller's
   * transaction or, without one, the module's `ambientTransaction`. Returns their ids.
   */
  async addMany<M extends MessageDefinition>(
    message: M,
    payloads: readonly WrittenPayloadOf<M>[],
    options?: Omit<OutboxWriteOptions, 'messageId'>,
  ): Promise<string[]>;
  async addMany<M extends MessageDefinition>(
    trx: OutboxTransaction,
    message: M,
    payloads: readonly WrittenPayloadOf<M>[],
    options?: Omit<OutboxWriteOptions, 'messageId'>,
  ): Promise<string[]>;
  async addMany(...args: unknown[]): Promise<string[]> {
    const [trx, message, payloads, options] = this.#transactionOf(args);
    if (!Array.isArray(payloads)) {
      throw new ConfigurationError(
        'payloads',
        `OutboxService.addMany takes an array of payloads, got ${describeValue(payloads)}; use add for one`,
      );
    }
    // One `messageId` for all of them would make every message after the first a duplicate.
    const checked = writeOptions(options, MANY_WRITE_OPTION_NAMES, 'OutboxService.addMany');
    return this.#written(
      this.#runtime.writer.addMany(
        trx,
        payloads.map((payload, index) =>
          this.#message(message as MessageDefinition, payload, checked, index),
        ),
      ),
    );
  }

  /**
   * A write, whose "run outboxkit migrate" says why `migrate: true` did not do it yet: a write
   * from an `onModuleInit` comes before the module's bootstrap, where it migrates.
   */
  async #written<T>(write: Promise<T>): Promise<T> {
    try {
      return await write;
    } catch (error) {
      if (
        error instanceof OutboxkitError &&
        error.code === 'schema-not-migrated' &&
        this.#runtime.migrationPending
      ) {
        throw new OutboxkitError(
          'schema-not-migrated',
          `${error.message}. The module's migrate: true runs in onApplicationBootstrap, after every onModuleInit: write from onApplicationBootstrap or later (or run the migration before the application starts)`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * The arguments of `add` or `addMany` with the transaction first: the one given, or, when the
   * first argument is a message definition rather than a transaction, the ambient one.
   */
  #transactionOf(args: unknown[]): [TransactionLike, ...unknown[]] {
    const [first] = args;
    const isTransaction =
      first !== null &&
      typeof first === 'object' &&
      (typeof (first as { query?: unknown }).query === 'function' ||
        typeof (first as { executeQuery?: unknown }).executeQuery === 'function');
    if (isTransaction) return args as [TransactionLike, ...unknown[]];
    const ambient = this.#runtime.options.ambientTransaction;
    if (!ambient) {
      // Writing outside a transaction, as the writer itself reports it: the option is one fix.
      throw new NotInTransactionError(
        'OutboxService.add was called without one, and the module has no `ambientTransaction` ' +
          'to join. Pass the transaction first (the Kysely `trx`, a pg client after `BEGIN`, or ' +
          "an ORM's through its adapter), or join nestjs-cls's `@Transactional()` by spreading " +
          '`clsOutbox(txHost, ...)` of outboxkit/nestjs-cls into the module options.',
      );
    }
    return [ambient() as TransactionLike, ...args];
  }

  /** The core writer, for messages without a definition. It does not apply `prefix`. */
  get writer(): OutboxWriter {
    return this.#runtime.writer;
  }

  /** The relay of this application, once started (undefined with `relay: false`). */
  get relay(): OutboxRelay | undefined {
    return this.#runtime.relay;
  }

  /** The consumer host running this application's handlers, once started. */
  get consumerHost(): ConsumerHost | undefined {
    return this.#runtime.consumerHost;
  }

  /** The queues of this application's handlers, with their dead-letter, delay and retry-due queues. */
  get topologies(): readonly ConsumerTopology[] {
    return this.#runtime.topologies;
  }

  /** Whether the relay and the handlers started and are not stopping. */
  get isRunning(): boolean {
    return this.#runtime.isRunning;
  }

  /** Pending, retrying and parked rows, and the age of the oldest pending row. */
  outboxStatus(): Promise<OutboxStatus> {
    return this.#runtime.outboxStatus();
  }

  /** Messages waiting in each handler's dead-letter queue, by queue name. */
  deadLetterDepths(): Promise<Map<string, number>> {
    return this.#runtime.deadLetterDepths();
  }

  #message<P>(
    definition: MessageDefinition<P>,
    payload: P,
    options: OutboxWriteOptions,
    index = 0,
  ): OutboxMessage<P> {
    const { causedBy, ...rest } = options;
    const orderingKey = options.orderingKey ?? definition.orderingKey?.(payload);
    if (orderingKey === undefined && definition.orderingKey !== undefined) {
      // Left out, the key would send the message without its order, and nothing would say so.
      throw new InvalidMessageError(
        'invalid-ordering-key',
        `the orderingKey of the definition for ${definition.exchange} ${JSON.stringify(definition.routingKey)} returned undefined for this payload, which would send the message without its order: return its key, or give \`orderingKey\` in the options`,
        index,
      );
    }
    const correlationId =
      options.correlationId ?? causedBy?.correlationId ?? causedBy?.messageId ?? undefined;
    const causationId = options.causationId ?? causedBy?.messageId;
    const contentType = options.contentType ?? definition.contentType;
    return {
      ...rest,
      ...(contentType !== undefined && { contentType }),
      exchange: `${this.#runtime.options.prefix}${definition.exchange}`,
      routingKey: definition.routingKey,
      payload,
      ...(orderingKey !== undefined && { orderingKey }),
      ...(correlationId !== undefined && { correlationId }),
      ...(causationId !== undefined && { causationId }),
    };
  }
}

/**
 * The per-message options of `add` or `addMany`, refused when not an object or with a name that
 * is none of `known`: `{ dealyMs: 5 }` would publish at once.
 */
function writeOptions(
  options: unknown,
  known: readonly string[],
  method: string,
): OutboxWriteOptions {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigurationError(
      'options',
      `${method} takes per-message options as an object { ${known.join(', ')} }, got ${describeValue(options)}`,
    );
  }
  rejectUnknownFields(options, known, 0, `the options of ${method}`);
  return options as OutboxWriteOptions;
}
