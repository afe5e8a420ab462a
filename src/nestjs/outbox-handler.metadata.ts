import { DiscoveryService } from '@nestjs/core';
import type {
  ConsumeContext,
  IsolationLevel,
  MessageInfo,
  QueueType,
  RetryPolicy,
} from '../consumer/consumer-definition.js';
import type { PayloadValidator } from '../consumer/payload-validator.js';
import { optionNames } from '../options/option-names.js';
import type { MessageDefinition } from './message-definition.js';

/**
 * Where and how a decorated method consumes. The names and defaults are those of the core's
 * `ConsumerDefinition`.
 */
export interface OutboxHandlerOptions<P = unknown> {
  /**
   * Identity of the handler in the processed-messages table, so two handlers of one message
   * each handle it once; also the default queue name. Keep it stable: a new name handles
   * everything again. As `name` in the core's `ConsumerDefinition`.
   */
  readonly name: string;
  /** Queue the handler consumes from; declared durable at bootstrap, with `<queue>.dlq`. Default: `name`. */
  readonly queue?: string | undefined;
  /**
   * Binding keys. Default: the routing keys of the handled message definitions, or none (`''`)
   * on a fanout exchange, which ignores them (a key given for one is refused).
   */
  readonly routingKeys?: readonly string[] | undefined;
  /**
   * Derives the key messages are deduplicated by, for example the order id, so two messages
   * about one order have one effect. Default: the message id.
   */
  readonly businessKey?: ((payload: P, message: MessageInfo) => string) | undefined;
  /**
   * Handle messages of one ordering key one at a time, in order (see `orderingKey` on the
   * message definition). The queue gets a single active consumer; retries happen in place.
   */
  readonly ordered?: boolean | undefined;
  /**
   * Split the ordered handler into this many queues, each with a single active consumer; every
   * message of one ordering key goes to the same one, so several instances of the application
   * share the work while each key keeps its order. Only with `ordered`; needs RabbitMQ's
   * `rabbitmq_consistent_hash_exchange` plugin. As `partitions` in the core's `ConsumerDefinition`.
   */
  readonly partitions?: number | undefined;
  /** Attempts and delays before a failing message is dead-lettered. Default 10, 1 s doubling. */
  readonly retry?: RetryPolicy | undefined;
  /**
   * Unacked deliveries the broker may send ahead, from each queue consumed (an unordered
   * handler's queue and its retry-due queue). Default `2 * concurrency * batchSize`.
   */
  readonly prefetch?: number | undefined;
  /** Transactions running at once for this handler. Default 4. */
  readonly concurrency?: number | undefined;
  /** Deliveries handled in one transaction. Default 1; not with `ordered`. */
  readonly batchSize?: number | undefined;
  /** Time limit of one handler call; `context.signal` aborts when it passes. Default 60 s. */
  readonly timeoutMs?: number | undefined;
  /** Default `quorum`. */
  readonly queueType?: QueueType | undefined;
  /** Default `read committed`. */
  readonly isolationLevel?: IsolationLevel | undefined;
  /** Accepted content types. Default `['application/json']`. */
  readonly contentTypes?: readonly string[] | undefined;
  /** Headers every message must carry; a message without one is dead-lettered. */
  readonly requiredHeaders?: readonly string[] | undefined;
  /**
   * Checks the payload before the transaction (a schema, or a function returning the payload);
   * overrides the message definition's `validate`.
   */
  readonly validate?: PayloadValidator<P> | undefined;
}

/** What `@OutboxHandler` records on a method. */
export interface OutboxHandlerMetadata {
  readonly messages: readonly MessageDefinition[];
  readonly options: OutboxHandlerOptions;
}

/** A method that can handle payloads: it takes the payload and the consume context. */
// biome-ignore lint/suspicious/noExplicitAny: the context's `tx` is the handle of whichever ORM opens the transaction
export type OutboxHandlerMethod = (payload: never, context: ConsumeContext<any, any>) => unknown;

/**
 * The discoverable decorator behind `@OutboxHandler`: its metadata key is private to this
 * module, and `DiscoveryService.getMetadataByDecorator` reads it back.
 */
export const OutboxHandlerDiscoverable = DiscoveryService.createDecorator<OutboxHandlerMetadata>();

/** Every option of `OutboxHandlerOptions`, for the options table in docs/options.md. */
export const HANDLER_OPTION_NAMES = optionNames<OutboxHandlerOptions>()([
  'name',
  'queue',
  'routingKeys',
  'businessKey',
  'ordered',
  'partitions',
  'retry',
  'prefetch',
  'concurrency',
  'batchSize',
  'timeoutMs',
  'queueType',
  'isolationLevel',
  'contentTypes',
  'requiredHeaders',
  'validate',
]);
