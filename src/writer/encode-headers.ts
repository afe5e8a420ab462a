import { fieldTableBytes } from '../amqp/content-header-bytes.js';
import { amqpEncodableNumber, unencodableNumberProblem } from '../amqp/encodable-number.js';
import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from '../protocol/message-headers.js';
import { TRACEPARENT_HEADER, traceHeaders } from '../tracing/trace-headers.js';
import { isPlainObject } from '../util/plain-object.js';
import { STORABLE_TEXT_RULE, unstorableText } from '../util/storable-text.js';
import type { HeaderValue } from './outbox-message.js';

/** AMQP short strings (header names) hold at most 255 bytes. */
const NAME_BYTES = 255;
const MAX_HEADER_DEPTH = 4;

/**
 * Largest AMQP encoding of a message's headers the writer accepts. amqplib encodes a message's
 * headers in a 64 KiB buffer and fails the publish above it (the relay would park the row); the
 * rest is left for what outboxkit adds on the way: the ordering key, causation id, publish tag
 * and trace context, and a retry's or dead letter's `x-outboxkit-*` headers (about 3 KiB).
 */
export const MAX_HEADERS_BYTES = 56 * 1024;

/** Header names outboxkit writes itself; a producer's own would be taken for outboxkit's. */
const RESERVED_HEADER_PREFIX = 'x-outboxkit-';

/**
 * Headers the relay sets from the row's columns, and only when the column is set: a producer's
 * `x-ordering-key` on a row without `orderingKey` would reach consumers as if the relay had
 * ordered it (ordered handlers and partitions go by it).
 */
const COLUMN_HEADERS: Readonly<Record<string, string>> = {
  [ORDERING_KEY_HEADER]: 'orderingKey',
  [CAUSATION_ID_HEADER]: 'causationId',
};

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return 'a nested array';
  if (value === null) return 'null';
  if (typeof value === 'object') {
    const tag = Object.prototype.toString.call(value).slice(8, -1);
    return tag === 'Object' ? 'an object' : `a ${tag}`;
  }
  return typeof value;
}

function checkHeaderValue(value: unknown, path: string, index: number, depth: number): void {
  if (typeof value === 'number' && Number.isFinite(value) && !amqpEncodableNumber(value)) {
    throw new InvalidMessageError(
      'invalid-header',
      `header ${path} ${unencodableNumberProblem(value)}`,
      index,
    );
  }
  const ok =
    (typeof value === 'string' && unstorableText(value) === undefined) ||
    typeof value === 'boolean' ||
    value === null ||
    (typeof value === 'number' && Number.isFinite(value));
  if (ok) return;
  if (Array.isArray(value) && depth < MAX_HEADER_DEPTH) {
    for (const [i, v] of value.entries()) checkHeaderValue(v, `${path}[${i}]`, index, depth + 1);
    return;
  }
  throw new InvalidMessageError(
    'invalid-header',
    `header ${path} must be a string (${STORABLE_TEXT_RULE}), finite number, boolean, null or an array of those; got ${describe(value)}`,
    index,
  );
}

/**
 * `CC` and `BCC` are RabbitMQ's sender-selected distribution: routing keys that each get a copy
 * too. The broker takes them only as arrays of strings; anything else makes it close the
 * publishing channel, so the row would fail every try (and take its batch's channel with it).
 */
function checkDistributionHeader(name: string, value: unknown, index: number): void {
  if (name !== 'CC' && name !== 'BCC') return;
  if (Array.isArray(value) && value.every((key) => typeof key === 'string')) return;
  throw new InvalidMessageError(
    'invalid-header',
    `header ${name} must be an array of routing keys (RabbitMQ routes a copy to each, and refuses the message otherwise), got ${describe(value)}`,
    index,
  );
}

function checkHeaderName(name: string, index: number): void {
  if (name.length === 0 || Buffer.byteLength(name) > NAME_BYTES || unstorableText(name)) {
    throw new InvalidMessageError(
      'invalid-header',
      `header name ${JSON.stringify(name)} must be 1 to ${NAME_BYTES} bytes, ${STORABLE_TEXT_RULE}`,
      index,
    );
  }
  const lower = name.toLowerCase();
  if (lower.startsWith(RESERVED_HEADER_PREFIX)) {
    // Forwarded from a consumed message, `x-outboxkit-retries` would make the new
    // message's consumer start at that attempt and dead-letter it early.
    throw new InvalidMessageError(
      'invalid-header',
      `header name ${JSON.stringify(name)} is reserved: outboxkit sets the ${RESERVED_HEADER_PREFIX}* headers itself (drop them when forwarding a consumed message's headers)`,
      index,
    );
  }
  const field = COLUMN_HEADERS[lower];
  if (field !== undefined) {
    throw new InvalidMessageError(
      'invalid-header',
      `header name ${JSON.stringify(name)} is reserved: the relay sets it from the message's \`${field}\`; give \`${field}\` instead (and drop it when forwarding a consumed message's headers)`,
      index,
    );
  }
}

/**
 * Checks the headers and returns them as JSON text for the row, or null. With OpenTelemetry in
 * use they also get the active trace context (`traceparent`), so the consumer's span continues
 * the trace the message was written in.
 */
export function encodeHeaders(headers: unknown, index: number): string | null {
  let own: Record<string, HeaderValue> = {};
  if (headers !== undefined) {
    // A Map would be stored as `{}`, its entries dropped without a word.
    if (!isPlainObject(headers)) {
      throw new InvalidMessageError(
        'invalid-header',
        `\`headers\` must be a plain object of names to values, got ${describe(headers)}${headers instanceof Map ? ' (use Object.fromEntries(map))' : ''}`,
        index,
      );
    }
    for (const [name, value] of Object.entries(headers)) {
      checkHeaderName(name, index);
      checkHeaderValue(value, JSON.stringify(name), index, 0);
      checkDistributionHeader(name, value, index);
    }
    own = headers as Record<string, HeaderValue>;
  }
  // A traceparent set by the caller wins, and nothing is added beside it: a tracestate of
  // the active trace would not belong to the caller's.
  const trace = Object.hasOwn(own, TRACEPARENT_HEADER) ? undefined : traceHeaders();
  const all = trace === undefined ? own : { ...trace, ...own };
  const names = Object.keys(all);
  if (names.length === 0) return null;
  const bytes = fieldTableBytes(all);
  if (bytes > MAX_HEADERS_BYTES) {
    throw new InvalidMessageError(
      'invalid-header',
      `headers take ${bytes} bytes encoded, over the limit of ${MAX_HEADERS_BYTES} (amqplib sends at most 64 KiB of headers, and outboxkit adds its own): put large values in the payload`,
      index,
    );
  }
  return JSON.stringify(all);
}
