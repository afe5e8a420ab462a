import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { TRACEPARENT_HEADER, traceHeaders } from '../tracing/trace-headers.js';
import { unstorableText } from '../util/storable-text.js';
import { uuidv7 } from '../util/uuidv7.js';
import type { HeaderValue, OutboxMessage } from './outbox-message.js';

/** A message checked and serialized, ready to be inserted as an outbox row. */
export interface EncodedMessage {
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly payload: Buffer;
  readonly contentType: string;
  /** JSON text of the headers, or null. */
  readonly headers: string | null;
  readonly orderingKey: string | null;
  readonly delayMs: number;
  readonly correlationId: string | null;
  readonly causationId: string | null;
}

/** AMQP short strings (exchange, routing key, property values) hold at most 255 bytes. */
const SHORT_STRING_BYTES = 255;
const MAX_HEADER_DEPTH = 4;

/** Header names outboxkit writes itself; a producer's own would be taken for outboxkit's. */
const RESERVED_HEADER_PREFIX = 'x-outboxkit-';

/** Said of every string the row stores as text or jsonb. */
const TEXT_RULE = 'without NUL or lone surrogates';

/** Checked before sending: a failing INSERT would abort the caller's transaction. */
function storableText(value: string): boolean {
  return unstorableText(value) === undefined;
}

function shortString(value: unknown, allowEmpty: boolean): value is string {
  return (
    typeof value === 'string' &&
    (allowEmpty || value.length > 0) &&
    Buffer.byteLength(value) <= SHORT_STRING_BYTES &&
    storableText(value)
  );
}

function optionalShortString(
  value: unknown,
  reason:
    | 'invalid-message-id'
    | 'invalid-ordering-key'
    | 'invalid-correlation-id'
    | 'invalid-causation-id',
  field: string,
  index: number,
): string | null {
  if (value === undefined || value === null) return null;
  if (!shortString(value, false)) {
    throw new InvalidMessageError(
      reason,
      `\`${field}\` must be a non-empty string of at most ${SHORT_STRING_BYTES} bytes, ${TEXT_RULE}`,
      index,
    );
  }
  return value;
}

function checkHeaderValue(value: unknown, path: string, index: number, depth: number): void {
  const ok =
    (typeof value === 'string' && storableText(value)) ||
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
    `header ${path} must be a string (${TEXT_RULE}), finite number, boolean, null or an array of those; got ${describe(value)}`,
    index,
  );
}

function describe(value: unknown): string {
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return 'a nested array';
  return value === null ? 'null' : typeof value;
}

function encodeHeaders(headers: unknown, index: number): string | null {
  let own: Record<string, HeaderValue> = {};
  if (headers !== undefined && headers !== null) {
    if (typeof headers !== 'object' || Array.isArray(headers)) {
      throw new InvalidMessageError('invalid-header', '`headers` must be a plain object', index);
    }
    for (const [name, value] of Object.entries(headers)) {
      if (!shortString(name, false)) {
        throw new InvalidMessageError(
          'invalid-header',
          `header name ${JSON.stringify(name)} must be 1 to ${SHORT_STRING_BYTES} bytes, ${TEXT_RULE}`,
          index,
        );
      }
      if (name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX)) {
        // Forwarded from a consumed message, `x-outboxkit-retries` would make the new
        // message's consumer start at that attempt and dead-letter it early.
        throw new InvalidMessageError(
          'invalid-header',
          `header name ${JSON.stringify(name)} is reserved: outboxkit sets the ${RESERVED_HEADER_PREFIX}* headers itself (drop them when forwarding a consumed message's headers)`,
          index,
        );
      }
      checkHeaderValue(value, JSON.stringify(name), index, 0);
    }
    own = headers as Record<string, HeaderValue>;
  }
  // A traceparent set by the caller wins, and nothing is added beside it: a tracestate of
  // the active trace would not belong to the caller's.
  const trace = Object.hasOwn(own, TRACEPARENT_HEADER) ? undefined : traceHeaders();
  const all = trace === undefined ? own : { ...trace, ...own };
  return Object.keys(all).length === 0 ? null : JSON.stringify(all);
}

function encodePayload(
  message: OutboxMessage,
  index: number,
  maxMessageBytes: number,
): { payload: Buffer; contentType: string } {
  let payload: Buffer;
  let contentType: string;
  if (Buffer.isBuffer(message.payload)) {
    if (!shortString(message.contentType, false)) {
      throw new InvalidMessageError(
        'missing-content-type',
        'a Buffer payload needs `contentType` (for example "application/octet-stream")',
        index,
      );
    }
    payload = message.payload;
    contentType = message.contentType;
  } else {
    let json: string | undefined;
    try {
      json = JSON.stringify(message.payload);
    } catch (error) {
      throw new InvalidMessageError(
        'payload-not-serializable',
        `payload cannot be serialized to JSON: ${(error as Error).message}`,
        index,
        error,
      );
    }
    if (json === undefined) {
      throw new InvalidMessageError(
        'payload-not-serializable',
        `payload of type ${typeof message.payload} has no JSON form`,
        index,
      );
    }
    payload = Buffer.from(json);
    contentType = message.contentType ?? 'application/json';
    if (!shortString(contentType, false)) {
      throw new InvalidMessageError(
        'missing-content-type',
        '`contentType` must be a non-empty string',
        index,
      );
    }
  }
  if (payload.length > maxMessageBytes) {
    throw new InvalidMessageError(
      'payload-too-large',
      `payload is ${payload.length} bytes, over the limit of ${maxMessageBytes} (option maxMessageBytes)`,
      index,
    );
  }
  return { payload, contentType };
}

/**
 * Checks a message and serializes it; throws `InvalidMessageError` naming the first problem.
 * With OpenTelemetry in use, the headers also get the active trace context (`traceparent`),
 * so the consumer's span continues the trace the message was written in.
 */
export function encodeMessage(
  message: OutboxMessage,
  index: number,
  maxMessageBytes: number,
): EncodedMessage {
  if (message === null || typeof message !== 'object') {
    throw new InvalidMessageError('missing-exchange', 'message must be an object', index);
  }
  if (!shortString(message.exchange, false)) {
    throw new InvalidMessageError(
      'missing-exchange',
      `\`exchange\` must name an exchange (1 to ${SHORT_STRING_BYTES} bytes, ${TEXT_RULE}), got ${JSON.stringify(message.exchange)}`,
      index,
    );
  }
  if (!shortString(message.routingKey, true)) {
    throw new InvalidMessageError(
      'invalid-routing-key',
      `\`routingKey\` must be a string of at most ${SHORT_STRING_BYTES} bytes, ${TEXT_RULE}`,
      index,
    );
  }
  const delayMs = message.delayMs ?? 0;
  if (!Number.isSafeInteger(delayMs) || delayMs < 0) {
    throw new InvalidMessageError(
      'invalid-delay',
      '`delayMs` must be a non-negative integer',
      index,
    );
  }
  const { payload, contentType } = encodePayload(message, index, maxMessageBytes);
  return {
    messageId:
      optionalShortString(message.messageId, 'invalid-message-id', 'messageId', index) ?? uuidv7(),
    exchange: message.exchange,
    routingKey: message.routingKey,
    payload,
    contentType,
    headers: encodeHeaders(message.headers, index),
    orderingKey: optionalShortString(
      message.orderingKey,
      'invalid-ordering-key',
      'orderingKey',
      index,
    ),
    delayMs,
    correlationId: optionalShortString(
      message.correlationId,
      'invalid-correlation-id',
      'correlationId',
      index,
    ),
    causationId: optionalShortString(
      message.causationId,
      'invalid-causation-id',
      'causationId',
      index,
    ),
  };
}
