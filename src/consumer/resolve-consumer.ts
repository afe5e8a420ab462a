import { refuseReservedExchange } from '../amqp/exchange-declaration.js';
import { SHORT_STRING_BYTES } from '../amqp/short-string.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { backoffOption } from '../options/backoff-option.js';
import { booleanOption } from '../options/boolean-option.js';
import { maxAttemptsOption } from '../options/max-attempts-option.js';
import { nestedOptions } from '../options/nested-options.js';
import { mediaType } from '../protocol/media-type.js';
import { durationMs } from '../util/duration-option.js';
import { positiveInteger } from '../util/positive-integer.js';
import { unstorableText } from '../util/storable-text.js';
import {
  type AnyConsumerDefinition,
  EXCHANGE_TYPES,
  type ExchangeType,
  type IsolationLevel,
  type QueueType,
  RETRY_POLICY_OPTION_NAMES,
  rejectUnknownDefinitionOptions,
} from './consumer-definition.js';
import { MAX_PARTITIONS } from './partition-set.js';
import { isPayloadValidator, PAYLOAD_VALIDATOR_RULE } from './payload-validator.js';

/** A consumer definition checked and completed with defaults. */
export interface ResolvedConsumer {
  readonly definition: AnyConsumerDefinition;
  readonly name: string;
  readonly exchange: string;
  readonly exchangeType: ExchangeType;
  readonly routingKeys: readonly string[];
  readonly queue: string;
  readonly queueType: QueueType;
  readonly concurrency: number;
  readonly prefetch: number;
  readonly batchSize: number;
  readonly ordered: boolean;
  /** Partition queues of an ordered consumer; undefined for a consumer of one queue. */
  readonly partitions: number | undefined;
  readonly maxAttempts: number;
  /** `retryDelaysMs[n - 1]` is the delay after failed attempt n; one entry per retry. */
  readonly retryDelaysMs: readonly number[];
  readonly timeoutMs: number;
  readonly isolationLevel: IsolationLevel;
  /** Accepted media types, lower case, without parameters. */
  readonly contentTypes: readonly string[];
  readonly requiredHeaders: readonly string[];
}

export interface ResolveLimits {
  /** The broker's `consumer_timeout`: a delivery unacked for longer gets its channel closed. */
  readonly brokerConsumerTimeoutMs: number;
}

const QUEUE_TYPES: readonly QueueType[] = ['classic', 'quorum'];
const ISOLATION_LEVELS: readonly IsolationLevel[] = [
  'read committed',
  'repeatable read',
  'serializable',
];
/** The most unacked deliveries AMQP lets a consumer's channel have (`basic.qos` is 16 bits). */
const MAX_PREFETCH = 65_535;

/** Room kept in the 255-byte queue name for the suffixes of the retry and dead-letter queues. */
const MAX_QUEUE_BYTES = 200;

export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_MAX_ATTEMPTS = 10;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 1000, maxMs: 300_000, factor: 2 });

/** A non-empty string of at most `maxBytes` UTF-8 bytes: AMQP names are short strings. */
function isNameOfBytes(value: unknown, maxBytes: number): value is string {
  return typeof value === 'string' && value.length > 0 && Buffer.byteLength(value) <= maxBytes;
}

/** Checks one definition and fills in defaults; errors name the option as `consumers[name].option`. */
export function resolveConsumer(
  definition: AnyConsumerDefinition,
  limits: ResolveLimits,
): ResolvedConsumer {
  if (definition === null || typeof definition !== 'object') {
    throw new ConfigurationError('consumers', 'every consumer must be a definition object');
  }
  const name = definition.name;
  if (!isNameOfBytes(name, SHORT_STRING_BYTES)) {
    throw new ConfigurationError(
      'consumers[].name',
      `must be a non-empty string of at most ${SHORT_STRING_BYTES} bytes, got ${JSON.stringify(name)}`,
    );
  }
  const unstorable = unstorableText(name);
  if (unstorable !== undefined) {
    // Stored with each processed key: Postgres would refuse it, or merge it with another name.
    throw new ConfigurationError(
      'consumers[].name',
      `${unstorable}; the name is stored with each processed key: got ${JSON.stringify(name)}`,
    );
  }
  const option = (field: string) => `consumers[${name}].${field}`;
  const fail = (field: string, detail: string): never => {
    throw new ConfigurationError(option(field), detail);
  };
  // A lone surrogate would reach the broker as U+FFFD, a NUL as a name the writer refuses.
  const textRule = (field: string, value: string): void => {
    const problem = unstorableText(value);
    if (problem !== undefined) fail(field, `${problem}; got ${JSON.stringify(value)}`);
  };
  const integer = (field: string, value: unknown, fallback: number): number =>
    positiveInteger(option(field), value, fallback);
  const owner = `the consumer "${name}"`;
  rejectUnknownDefinitionOptions(definition, name);
  const retry = nestedOptions(
    option('retry'),
    definition.retry,
    RETRY_POLICY_OPTION_NAMES,
    `the retry policy of ${owner}`,
  );

  if (typeof definition.handler !== 'function') fail('handler', 'must be a function');
  if (definition.validate !== undefined && !isPayloadValidator(definition.validate)) {
    fail('validate', PAYLOAD_VALIDATOR_RULE);
  }
  if (definition.businessKey !== undefined && typeof definition.businessKey !== 'function') {
    fail('businessKey', 'must be a function when given');
  }

  const exchange = definition.exchange;
  if (!isNameOfBytes(exchange, SHORT_STRING_BYTES)) {
    fail('exchange', 'must name an exchange (the default exchange cannot be bound to)');
  }
  // The writer refuses such a name, so nothing could ever be published to the consumer.
  textRule('exchange', exchange);
  refuseReservedExchange(option('exchange'), exchange);
  const exchangeType = definition.exchangeType ?? 'topic';
  if (!EXCHANGE_TYPES.includes(exchangeType)) {
    fail('exchangeType', `must be one of ${EXCHANGE_TYPES.join(', ')}`);
  }
  const routingKeys = definition.routingKeys ?? defaultRoutingKeys(exchangeType) ?? [];
  if (
    !Array.isArray(routingKeys) ||
    routingKeys.length === 0 ||
    !routingKeys.every((k) => typeof k === 'string')
  ) {
    fail('routingKeys', 'must be a non-empty array of binding keys');
  }
  for (const [i, key] of routingKeys.entries()) {
    if (Buffer.byteLength(key) > SHORT_STRING_BYTES) {
      fail(
        `routingKeys[${i}]`,
        `must be at most ${SHORT_STRING_BYTES} bytes (an AMQP short string), got ${Buffer.byteLength(key)}`,
      );
    }
    textRule(`routingKeys[${i}]`, key);
  }
  // Bound as given, a key here would read as a filter that RabbitMQ never applies: the handler
  // would get every message of the exchange, of any kind.
  if (exchangeType === 'fanout' && routingKeys.some((k) => k !== '')) {
    fail(
      'routingKeys',
      'a fanout exchange ignores binding keys and sends the queue every message: leave `routingKeys` out, or choose messages by key on a topic or direct exchange',
    );
  }

  const queue = definition.queue ?? name;
  if (!isNameOfBytes(queue, MAX_QUEUE_BYTES)) {
    const bytes = typeof queue === 'string' ? `, got ${Buffer.byteLength(queue)}` : '';
    fail(
      'queue',
      definition.queue === undefined
        ? `is the consumer's name when left out, and must be a name of 1 to ${MAX_QUEUE_BYTES} bytes (its retry and dead-letter queues add suffixes to it${bytes}): set a shorter queue, or a shorter name`
        : `must be a name of 1 to ${MAX_QUEUE_BYTES} bytes (its retry and dead-letter queues add suffixes to it${bytes})`,
    );
  }
  textRule('queue', queue);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
  if (/[\u0000-\u001f\u007f]/.test(queue)) {
    // RabbitMQ drops them from the names it declares and not from the names consumed: a line
    // break left queues of another name behind and a start that timed out on a 404.
    fail(
      'queue',
      `must not contain control characters (line breaks, tabs...)${definition.queue === undefined ? ", and is the consumer's name when left out" : ''}; got ${JSON.stringify(queue)}`,
    );
  }
  if (queue.startsWith('amq.'))
    fail('queue', 'names starting with "amq." are reserved by RabbitMQ');
  const queueType = definition.queueType ?? 'quorum';
  if (!QUEUE_TYPES.includes(queueType))
    fail('queueType', `must be one of ${QUEUE_TYPES.join(', ')}`);

  const ordered = booleanOption(option('ordered'), definition.ordered, false);
  const concurrency = integer('concurrency', definition.concurrency, DEFAULT_CONCURRENCY);
  const batchSize = integer('batchSize', definition.batchSize, 1);
  // Every transaction slot is filled from the prefetch, which AMQP caps at 65535.
  if (concurrency * batchSize > MAX_PREFETCH) {
    fail(
      definition.batchSize === undefined ? 'concurrency' : 'batchSize',
      `concurrency * batchSize must be at most ${MAX_PREFETCH}, the most deliveries RabbitMQ sends ahead (the prefetch); got ${concurrency} * ${batchSize}`,
    );
  }
  if (ordered && batchSize > 1) {
    fail('batchSize', 'batches are not available for ordered consumers; leave batchSize at 1');
  }
  const partitions =
    definition.partitions === undefined
      ? undefined
      : positiveInteger(option('partitions'), definition.partitions);
  if (partitions !== undefined && !ordered) {
    fail(
      'partitions',
      'partitions keep the order of each ordering key across queues; they need `ordered: true`',
    );
  }
  if (partitions !== undefined && partitions > MAX_PARTITIONS) {
    fail('partitions', `must be at most ${MAX_PARTITIONS}, got ${partitions}`);
  }
  const prefetch = integer(
    'prefetch',
    definition.prefetch,
    Math.min(2 * concurrency * batchSize, MAX_PREFETCH),
  );
  if (prefetch < concurrency * batchSize || prefetch > MAX_PREFETCH) {
    fail(
      'prefetch',
      `must be between concurrency * batchSize (${concurrency * batchSize}) and ${MAX_PREFETCH}, so every ` +
        `transaction slot can be filled; got ${prefetch}`,
    );
  }

  const maxAttempts = maxAttemptsOption(
    option('retry.maxAttempts'),
    retry?.maxAttempts,
    DEFAULT_MAX_ATTEMPTS,
  );
  const backoff = backoffOption(option('retry.backoff'), retry?.backoff, DEFAULT_BACKOFF, {
    noJitter:
      'is not taken: consumer retry delays are exact (each delay is a delay queue, whose ' +
      'messages all wait the same), so there is no jitter',
  });
  const factor = backoff.factor ?? DEFAULT_BACKOFF.factor;
  const retryDelaysMs = Array.from({ length: maxAttempts - 1 }, (_, i) =>
    Math.round(Math.min(backoff.maxMs, backoff.initialMs * factor ** i)),
  );

  const timeoutMs = durationMs(option('timeoutMs'), definition.timeoutMs, DEFAULT_TIMEOUT_MS);
  const { brokerConsumerTimeoutMs } = limits;
  if (timeoutMs >= brokerConsumerTimeoutMs) {
    fail(
      'timeoutMs',
      `must be below the broker's consumer timeout (${brokerConsumerTimeoutMs} ms, option ` +
        'brokerConsumerTimeoutMs), or the broker closes the channel first',
    );
  }
  if (ordered) {
    // An ordered consumer retries in place, holding the delivery unacked the whole time.
    const worst = retryDelaysMs.reduce((a, b) => a + b, 0) + maxAttempts * timeoutMs;
    if (worst >= brokerConsumerTimeoutMs) {
      fail(
        'retry',
        `an ordered consumer retries in place and may hold a message for ${worst} ms ` +
          `(retry delays plus maxAttempts * timeoutMs), which must stay below the broker's ` +
          `consumer timeout (${brokerConsumerTimeoutMs} ms); lower maxAttempts, the backoff or timeoutMs`,
      );
    }
  }

  const isolationLevel = definition.isolationLevel ?? 'read committed';
  if (!ISOLATION_LEVELS.includes(isolationLevel)) {
    fail('isolationLevel', `must be one of ${ISOLATION_LEVELS.join(', ')}`);
  }
  const contentTypes = definition.contentTypes ?? ['application/json'];
  if (
    !Array.isArray(contentTypes) ||
    contentTypes.length === 0 ||
    !contentTypes.every((c) => typeof c === 'string' && c.length > 0)
  ) {
    fail('contentTypes', 'must be a non-empty array of media types');
  }
  const requiredHeaders = definition.requiredHeaders ?? [];
  if (
    !Array.isArray(requiredHeaders) ||
    !requiredHeaders.every((h) => typeof h === 'string' && h.length > 0)
  ) {
    fail('requiredHeaders', 'must be an array of header names');
  }

  return Object.freeze({
    definition,
    name,
    exchange,
    exchangeType,
    routingKeys: Object.freeze([...routingKeys]),
    queue,
    queueType,
    concurrency,
    prefetch,
    batchSize,
    ordered,
    partitions,
    maxAttempts,
    retryDelaysMs: Object.freeze(retryDelaysMs),
    timeoutMs,
    isolationLevel,
    contentTypes: Object.freeze(contentTypes.map(mediaType)),
    requiredHeaders: Object.freeze([...requiredHeaders]),
  });
}

/** Resolves every definition and rejects clashes between them. */
export function resolveConsumers(
  definitions: readonly AnyConsumerDefinition[],
  limits: ResolveLimits,
): ResolvedConsumer[] {
  if (!Array.isArray(definitions)) {
    throw new ConfigurationError('consumers', 'must be an array of consumer definitions');
  }
  // Array.from visits the holes of a sparse array, which map would skip.
  const resolved = Array.from(definitions, (d) => resolveConsumer(d, limits));
  const names = new Set<string>();
  const exchangeTypes = new Map<string, ExchangeType>();
  for (const c of resolved) {
    if (names.has(c.name)) {
      throw new ConfigurationError('consumers', `two consumers are named "${c.name}"`);
    }
    names.add(c.name);
    const type = exchangeTypes.get(c.exchange);
    if (type !== undefined && type !== c.exchangeType) {
      throw new ConfigurationError(
        `consumers[${c.name}].exchangeType`,
        `exchange "${c.exchange}" is declared as ${type} by another consumer`,
      );
    }
    exchangeTypes.set(c.exchange, c.exchangeType);
  }
  return resolved;
}

function defaultRoutingKeys(type: ExchangeType): readonly string[] | undefined {
  if (type === 'topic') return ['#'];
  if (type === 'fanout') return [''];
  return undefined;
}
