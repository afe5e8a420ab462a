import { refuseReservedExchange } from '../amqp/exchange-declaration.js';
import { SHORT_STRING_BYTES } from '../amqp/short-string.js';
import { EXCHANGE_TYPES, type ExchangeType } from '../consumer/consumer-definition.js';
import {
  isPayloadValidator,
  PAYLOAD_VALIDATOR_RULE,
  type PayloadValidator,
  type SchemaInput,
  type SchemaOutput,
  type StandardSchema,
  type WithSchema,
} from '../consumer/payload-validator.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import type { Bivariant } from '../util/bivariant.js';
import { describeValue } from '../util/describe-value.js';

/** Carries the payload type of a definition; never set at run time. */
declare const payloadType: unique symbol;
/** Carries the type the writer takes; never set at run time. */
declare const writtenType: unique symbol;

/**
 * A kind of message: where it is published and what its payload looks like. The writer
 * (`OutboxService.add`) and the handler decorator (`@OutboxHandler`) both take it, so a payload
 * of the wrong shape is a compile error on either side.
 */
export interface MessageDefinition<P = unknown, In = P> {
  /** Exchange the message is published to. */
  readonly exchange: string;
  /** Routing key it is published with; also the default binding key of its handlers. */
  readonly routingKey: string;
  /** Type of the exchange, used when it is declared. Default `topic`. */
  readonly exchangeType?: ExchangeType | undefined;
  /**
   * The content type the payload is sent with; JSON when left out. Bytes (a `Buffer`) need one,
   * such as `application/octet-stream`, and a string under a type that is not JSON is sent as
   * its UTF-8 text. The definition's handlers accept it (unless they list `contentTypes`).
   */
  readonly contentType?: string | undefined;
  /**
   * Derives the ordering key from the payload: messages of one key are published, and handled
   * by `ordered` handlers, in the order they were written. A key given to `add` wins.
   */
  readonly orderingKey?: Bivariant<(payload: In) => string> | undefined;
  /**
   * Checks an incoming payload and gives it typed, before the handler's transaction opens: a
   * schema (zod, valibot, ArkType: any Standard Schema), whose issues dead-letter the message
   * at once, or a function returning the payload. A malformed message cannot succeed on retry:
   * a function throwing dead-letters it at once, and so does returning `undefined`, or a
   * boolean for a payload that is not one. With a schema and no type argument, `defineMessage`
   * takes the payload type from the schema.
   */
  readonly validate?: PayloadValidator<P> | undefined;
  /**
   * The payload type, for the compiler only. (`orderingKey` is bivariant so that any definition
   * is also a `MessageDefinition<unknown>`.)
   */
  readonly [payloadType]?: P;
  /**
   * The type `OutboxService.add` takes, for the compiler only: the payload type, or a schema's
   * input type when the definition is typed by its schema (a field with a default may be left
   * out when writing; the handler gets it filled in).
   */
  readonly [writtenType]?: In;
}

/** Every field of a definition (the payload type is a symbol, for the compiler only). */
const DEFINITION_FIELDS = [
  'exchange',
  'routingKey',
  'exchangeType',
  'contentType',
  'orderingKey',
  'validate',
];

/** What the writer takes for a definition: its schema's input type, or its payload type. */
export type WrittenPayloadOf<M> = M extends MessageDefinition<unknown, infer In> ? In : never;

/**
 * The payload type of a definition, or the union of the payload types of a list of them: what
 * the handler gets (a schema's output). The written type is matched as `unknown`: left to its
 * default it would be inferred as `P` too, and a schema's input (a field with a default
 * optional) would win.
 */
export type PayloadOf<M> =
  M extends MessageDefinition<infer P, unknown>
    ? P
    : M extends readonly (infer D)[]
      ? D extends MessageDefinition<infer P, unknown>
        ? P
        : never
      : never;

/** Routing keys and exchanges are named in errors by this many characters at most. */
const LABEL_CHARS = 40;

/**
 * How errors name a definition: by its routing key (`defineMessage("order.placed")`), or by its
 * exchange when it has no routing key. Long names are cut: a key of 255 bytes would otherwise
 * be printed whole in the option and again in the message.
 */
function definitionLabel(definition: unknown): string {
  const { exchange, routingKey } = (definition ?? {}) as {
    exchange?: unknown;
    routingKey?: unknown;
  };
  const cut = (text: string) =>
    JSON.stringify(text.length > LABEL_CHARS ? `${text.slice(0, LABEL_CHARS)}…` : text);
  if (typeof routingKey === 'string') return `defineMessage(${cut(routingKey)})`;
  if (typeof exchange === 'string') return `defineMessage({ exchange: ${cut(exchange)} })`;
  return 'defineMessage';
}

/**
 * Defines a message kind with its payload type. The definition is plain frozen data; define it
 * once, in a module both the publisher and the handlers import.
 *
 * @example
 * export interface OrderPlaced { orderId: string; sku: string; quantity: number }
 * export const OrderPlaced = defineMessage<OrderPlaced>({
 *   exchange: 'orders',
 *   routingKey: 'order.placed',
 *   orderingKey: (order) => order.orderId,
 * });
 */
export function defineMessage<S extends StandardSchema>(
  definition: WithSchema<MessageDefinition<SchemaOutput<S>, SchemaInput<S>>, S>,
): MessageDefinition<SchemaOutput<S>, SchemaInput<S>>;
export function defineMessage<P>(definition: MessageDefinition<P>): MessageDefinition<P>;
export function defineMessage<P>(definition: MessageDefinition<P>): MessageDefinition<P> {
  const where = definitionLabel(definition);
  if (definition === null || typeof definition !== 'object') {
    throw new ConfigurationError(
      'defineMessage',
      'takes an object with `exchange` and `routingKey`',
    );
  }
  // A misspelt `orderKey` would leave every message unordered without a word.
  rejectUnknownOptions(definition, DEFINITION_FIELDS, {
    owner: 'a message definition',
    prefix: `${where}.`,
  });
  const { exchange, routingKey, exchangeType, contentType } = definition;
  if (contentType !== undefined && (typeof contentType !== 'string' || contentType.length === 0)) {
    throw new ConfigurationError(
      `${where}.contentType`,
      `must be a media type such as application/octet-stream, got ${describeValue(contentType)}`,
    );
  }
  if (typeof exchange !== 'string' || Buffer.byteLength(exchange) > SHORT_STRING_BYTES) {
    throw new ConfigurationError(
      `${where}.exchange`,
      `must name an exchange (1 to ${SHORT_STRING_BYTES} bytes)`,
    );
  }
  // RabbitMQ refuses to declare amq.* names; its predefined ones exist, and the module does not
  // declare them. The default exchange ('' or `amq.default`) is refused there, saying why.
  refuseReservedExchange(`${where}.exchange`, exchange);
  if (typeof routingKey !== 'string' || Buffer.byteLength(routingKey) > SHORT_STRING_BYTES) {
    throw new ConfigurationError(
      `${where}.routingKey`,
      `must be a string of at most ${SHORT_STRING_BYTES} bytes`,
    );
  }
  if (exchangeType !== undefined && !EXCHANGE_TYPES.includes(exchangeType)) {
    throw new ConfigurationError(
      `${where}.exchangeType`,
      `must be ${EXCHANGE_TYPES.join(', ')} when given, got ${JSON.stringify(exchangeType)}`,
    );
  }
  if (definition.orderingKey !== undefined && typeof definition.orderingKey !== 'function') {
    throw new ConfigurationError(`${where}.orderingKey`, 'must be a function when given');
  }
  if (definition.validate !== undefined && !isPayloadValidator(definition.validate)) {
    throw new ConfigurationError(`${where}.validate`, PAYLOAD_VALIDATOR_RULE);
  }
  return Object.freeze({ ...definition });
}
