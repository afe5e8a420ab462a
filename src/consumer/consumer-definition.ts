import type { Transaction } from 'kysely';
import { optionNames } from '../options/option-names.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import type { BackoffPolicy } from '../util/backoff.js';
import type { Bivariant } from '../util/bivariant.js';
import type {
  PayloadValidator,
  SchemaOutput,
  StandardSchema,
  WithSchema,
} from './payload-validator.js';
import { resolveConsumer } from './resolve-consumer.js';

/** Queue types a consumer can declare. Quorum queues replicate; classic queues are lighter. */
export type QueueType = 'classic' | 'quorum';

/** Exchange types a consumer can bind its queue to. */
export type ExchangeType = 'topic' | 'direct' | 'fanout';

/** Every `ExchangeType`, for the checks of plain-JavaScript input. */
export const EXCHANGE_TYPES: readonly ExchangeType[] = ['topic', 'direct', 'fanout'];

/** Isolation level of the handler's transaction. */
export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** What a consumer knows about a delivery before its handler runs. */
export interface MessageInfo {
  /** The AMQP `message-id` property; the default business key. */
  readonly messageId: string | undefined;
  /**
   * The message's headers, as published (outboxkit's own `x-outboxkit-*` headers included). A
   * retry does not carry the broker's `x-death` of its wait in outboxkit's delay queue.
   */
  readonly headers: Readonly<Record<string, unknown>>;
  /** The broker delivered this copy before (a lost channel or connection, or a requeue). */
  readonly redelivered: boolean;
  /** 1 for the first attempt, 2 after one failure, and so on. */
  readonly attempt: number;
  /** The exchange the message was first published to (kept across retries). */
  readonly exchange: string;
  /** The routing key the message was first published with (kept across retries). */
  readonly routingKey: string;
  readonly contentType: string | undefined;
  readonly correlationId: string | undefined;
  /**
   * The message id of the message this one was written in reply to (the writer's
   * `causationId`, carried in the `x-causation-id` header), if any.
   */
  readonly causationId: string | undefined;
  /** The `timestamp` property, in milliseconds since the epoch, when the publisher set it. */
  readonly timestamp: number | undefined;
  /** The ordering key the relay sets (`x-ordering-key`), if any. */
  readonly orderingKey: string | undefined;
}

/**
 * `context.trx`'s type: the Kysely transaction when `tx` is one (the default), `undefined` when
 * `tx` is an ORM's handle, so that `ctx.trx.insertInto(...)` in such a handler fails to compile
 * instead of at the first delivery. Wrapped in tuples so that a union `Tx` is not distributed.
 */
// biome-ignore lint/suspicious/noExplicitAny: any Kysely transaction, whatever its database type
export type KyselyTransactionOf<DB, Tx> = [Tx] extends [Transaction<any>]
  ? Transaction<DB>
  : undefined;

/**
 * What a handler gets beside the payload: the transaction its effects must use, and the
 * message's metadata. `Tx` is the type of `tx`: the Kysely transaction, or, when the host's
 * `transactions` option is an ORM's adapter, that ORM's handle (a TypeORM `EntityManager`, a
 * Prisma transaction client, ...).
 */
// biome-ignore lint/suspicious/noExplicitAny: a handler may use a transaction of any database type
export interface ConsumeContext<DB = any, Tx = Transaction<DB>> extends MessageInfo {
  /**
   * The Kysely transaction that also records the message as processed. Write every effect
   * through it: the effects and the dedupe row commit together, and the message is acked only
   * after that. Effects outside the database (HTTP calls, e-mail) are not covered: route them
   * through the outbox. Not set when an ORM adapter opens the transaction, and so typed
   * `undefined` when `Tx` names an ORM's handle: use `tx`.
   */
  readonly trx: KyselyTransactionOf<DB, Tx>;
  /**
   * The same transaction as the handle of whoever opened it: `trx` itself by default, the
   * ORM's handle with an ORM adapter (see docs/orm.md). Write every effect through it.
   */
  readonly tx: Tx;
  /** Name of the consumer handling the message. */
  readonly consumer: string;
  /** The key the message is deduplicated by. */
  readonly businessKey: string;
  /** Aborts when the handler exceeds its time limit; pass it to anything that can be cancelled. */
  readonly signal: AbortSignal;
}

/** How a failing message is retried before it is dead-lettered. */
export interface RetryPolicy {
  /** Handler attempts before the message goes to the dead-letter queue. Default 10. */
  readonly maxAttempts?: number | undefined;
  /**
   * Delay before each retry: `initialMs * factor^(n-1)` capped at `maxMs`. Jitter is not
   * applied: each distinct delay is a delay queue of its own. Default 1 s doubling to 5 min;
   * fields left out take these defaults.
   */
  readonly backoff?: Partial<Omit<BackoffPolicy, 'jitter'>> | undefined;
}

/**
 * A consumer: plain data naming where messages come from, plus the handler. The same shape is
 * what a framework adapter builds from decorators. `DB` is the database type of the handler's
 * `trx`: name it (`defineConsumer<OrderPlaced, Database>`), or `trx` is a `Transaction<any>`.
 * `Tx` is the type of `context.tx`; with an ORM adapter, name the ORM's handle
 * (`defineConsumer<OrderPlaced, unknown, EntityManager>`).
 *
 * @example
 * const orderPlaced = defineConsumer<OrderPlaced, Database>({
 *   name: 'billing.order-placed',
 *   exchange: 'orders',
 *   routingKeys: ['order.placed'],
 *   validate: OrderPlacedSchema,
 *   async handler(order, { trx }) {
 *     await trx.insertInto('invoices').values({ orderId: order.id }).execute();
 *   },
 * });
 */
// biome-ignore lint/suspicious/noExplicitAny: see ConsumeContext
export interface ConsumerDefinition<P = unknown, DB = any, Tx = Transaction<DB>> {
  /**
   * Identifies the consumer in the processed-messages table, so two consumers of one message
   * each handle it once. Also the default queue name. Keep it stable.
   */
  readonly name: string;
  /** Exchange the queue is bound to; declared durable at start. */
  readonly exchange: string;
  /** Default `topic`. */
  readonly exchangeType?: ExchangeType | undefined;
  /** Binding keys. Default `['#']` for topic exchanges and `['']` for fanout; required for direct. */
  readonly routingKeys?: readonly string[] | undefined;
  /** Queue name. Default: `name`. */
  readonly queue?: string | undefined;
  /** Default `quorum`. */
  readonly queueType?: QueueType | undefined;
  /**
   * Transactions (or batches) running at once for this consumer: the database sees at most
   * this many from it, whatever the backlog. Default 4.
   */
  readonly concurrency?: number | undefined;
  /**
   * Unacked deliveries the broker may send ahead, from each queue consumed (an unordered
   * consumer's queue and its retry-due queue). Default `2 * concurrency * batchSize`.
   */
  readonly prefetch?: number | undefined;
  /**
   * Handle up to this many deliveries in one transaction. Default 1 (one transaction per
   * message). Not available with `ordered`.
   */
  readonly batchSize?: number | undefined;
  /**
   * Handle messages of one ordering key one at a time, in queue order, while different keys
   * run concurrently. The queue gets `x-single-active-consumer`, so only one process consumes
   * it at a time, and retries happen in place, holding back the key's later messages.
   */
  readonly ordered?: boolean | undefined;
  /**
   * Splits an ordered consumer into this many queues, each with a single active consumer, and
   * routes every message of one ordering key to the same one (RabbitMQ's consistent-hash
   * exchange on the `x-ordering-key` header). Processes running the consumer share the
   * partitions, one active per partition, and a partition moves to a survivor when its process
   * dies. `concurrency` and `prefetch` apply per partition. Needs the
   * `rabbitmq_consistent_hash_exchange` plugin; only with `ordered`. Default: one queue, no
   * partitions. See "Partitions" in docs/consumer.md, also for changing the count.
   */
  readonly partitions?: number | undefined;
  readonly retry?: RetryPolicy | undefined;
  /** Time limit of one handler call. Default 60 s; keep it well below the broker's consumer timeout. */
  readonly timeoutMs?: number | undefined;
  /** Default `read committed`. Serialization failures are retried at once, in place. */
  readonly isolationLevel?: IsolationLevel | undefined;
  /**
   * Accepted content types. JSON types (`application/json`, `*+json`) are parsed; others reach
   * the handler as a Buffer. A message without a content type is taken as JSON. Default
   * `['application/json']`.
   */
  readonly contentTypes?: readonly string[] | undefined;
  /** Headers every message must carry; one missing dead-letters the message. */
  readonly requiredHeaders?: readonly string[] | undefined;
  /**
   * Checks the parsed payload and gives it typed: a schema of zod, valibot, ArkType or any
   * library implementing Standard Schema (`validate: OrderPlacedSchema`), whose issues
   * dead-letter the message at once, or a function returning the payload. A function throwing
   * dead-letters the message at once with the error in its headers, and so does returning
   * `undefined`, or a boolean for a payload that is not one (a type guard's answer where the
   * payload belongs).
   */
  readonly validate?: PayloadValidator<P> | undefined;
  /**
   * Derives the key messages are deduplicated by. Default: the message id. A key that is empty,
   * contains NUL, is not well-formed Unicode or is longer than `MAX_BUSINESS_KEY_BYTES` (1024
   * UTF-8 bytes) dead-letters the message at once as `invalid-business-key`.
   */
  readonly businessKey?: Bivariant<(payload: P, message: MessageInfo) => string> | undefined;
  /**
   * Applies the message's effects through `context.trx`. Throwing rolls back and retries after
   * a delay; throwing a `PermanentError` dead-letters the message at once.
   */
  handler(payload: P, context: ConsumeContext<DB, Tx>): Promise<void>;
}

/**
 * Returns the definition unchanged; it only helps TypeScript infer the payload type: from the
 * schema given as `validate`, or from the type arguments.
 */
// biome-ignore lint/suspicious/noExplicitAny: see ConsumeContext
export function defineConsumer<S extends StandardSchema, DB = any, Tx = Transaction<DB>>(
  definition: WithSchema<ConsumerDefinition<SchemaOutput<S>, DB, Tx>, S>,
): ConsumerDefinition<SchemaOutput<S>, DB, Tx>;
// biome-ignore lint/suspicious/noExplicitAny: see ConsumeContext
export function defineConsumer<P, DB = any, Tx = Transaction<DB>>(
  definition: ConsumerDefinition<P, DB, Tx>,
): ConsumerDefinition<P, DB, Tx>;
export function defineConsumer<P, DB, Tx>(
  definition: ConsumerDefinition<P, DB, Tx>,
): ConsumerDefinition<P, DB, Tx> {
  // Refused where the definition is written, as the host would refuse it at start: a misspelt
  // option, a missing handler, `ordered` with `batchSize`... Only the broker's consumer timeout,
  // which the host learns, is checked there alone.
  rejectUnknownDefinitionOptions(
    definition,
    String((definition as { name?: unknown } | null)?.name),
  );
  resolveConsumer(definition as AnyConsumerDefinition, {
    brokerConsumerTimeoutMs: Number.MAX_SAFE_INTEGER,
  });
  return definition;
}

/**
 * Refuses a field that is not an option of a consumer definition, suggesting the retry policy's
 * own where it belongs (`maxAttempts` for `retry.maxAttempts`).
 */
export function rejectUnknownDefinitionOptions(definition: unknown, name: string): void {
  rejectUnknownOptions(definition, CONSUMER_DEFINITION_OPTION_NAMES, {
    owner: `the consumer "${name}"`,
    prefix: `consumers[${name}].`,
    nested: { retry: RETRY_POLICY_OPTION_NAMES },
  });
}

/** Every field of `ConsumerDefinition`, for the options table in docs/options.md. */
export const CONSUMER_DEFINITION_OPTION_NAMES = optionNames<ConsumerDefinition>()([
  'name',
  'exchange',
  'exchangeType',
  'routingKeys',
  'queue',
  'queueType',
  'concurrency',
  'prefetch',
  'batchSize',
  'ordered',
  'partitions',
  'retry',
  'timeoutMs',
  'isolationLevel',
  'contentTypes',
  'requiredHeaders',
  'validate',
  'businessKey',
  'handler',
]);

/** Every option of `RetryPolicy`, for the options table in docs/options.md. */
export const RETRY_POLICY_OPTION_NAMES = optionNames<RetryPolicy>()(['maxAttempts', 'backoff']);

/** A consumer definition of any payload, database and transaction handle, as hosts take them. */
// biome-ignore lint/suspicious/noExplicitAny: a host runs consumers of every payload and handle
export type AnyConsumerDefinition = ConsumerDefinition<any, any, any>;
