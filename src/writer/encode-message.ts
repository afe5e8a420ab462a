import { reservedExchangeProblem } from '../amqp/predefined-exchanges.js';
import { SHORT_STRING_BYTES } from '../amqp/short-string.js';
import { InvalidMessageError } from '../errors/invalid-message-error.js';
import { describeValue } from '../util/describe-value.js';
import { STORABLE_TEXT_RULE, unstorableText } from '../util/storable-text.js';
import { uuidv7 } from '../util/uuidv7.js';
import { encodeHeaders } from './encode-headers.js';
import { encodePayload } from './encode-payload.js';
import { MESSAGE_FIELDS, rejectUnknownFields } from './message-fields.js';
import type { OutboxMessage } from './outbox-message.js';

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

/**
 * Longest delay accepted: 366 days. A delay is a wait after commit (a retry later, a reminder),
 * not a calendar: an epoch timestamp passed by mistake (1.7e12 ms, 54 years) would otherwise
 * leave a row pending for good, counted in the backlog and never published.
 */
export const MAX_DELAY_MS = 366 * 24 * 60 * 60 * 1000;

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

/** What a refused routing key was, when the rule alone does not say: its length, or its type. */
function routingKeyGot(value: unknown): string {
  if (typeof value !== 'string') return `; got ${describeValue(value)}`;
  const bytes = Buffer.byteLength(value);
  return bytes > SHORT_STRING_BYTES ? `; got ${bytes} bytes` : '';
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
  if (value === undefined) return null;
  // A blank id is a value left empty upstream; as the dedupe key it would merge unrelated messages.
  const blank = reason === 'invalid-message-id' && typeof value === 'string' && value.trim() === '';
  if (!shortString(value, false) || blank) {
    throw new InvalidMessageError(
      reason,
      `\`${field}\` must be a non-empty${reason === 'invalid-message-id' ? ', not blank,' : ''} string of at most ${SHORT_STRING_BYTES} bytes, ${STORABLE_TEXT_RULE}${value === null ? `, or left out (undefined): got null${reason === 'invalid-ordering-key' ? ', which would send the message without its order' : ''}` : ''}`,
      index,
    );
  }
  return value;
}

/**
 * Checks a message and serializes it; throws `InvalidMessageError` naming the first problem.
 * With OpenTelemetry in use, the headers also get the active trace context (see encodeHeaders).
 */
export function encodeMessage(
  message: OutboxMessage,
  index: number,
  maxMessageBytes: number,
): EncodedMessage {
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw new InvalidMessageError(
      'not-a-message',
      `message must be an object { exchange, routingKey, payload, ... }, got ${message === null ? 'null' : Array.isArray(message) ? 'an array' : typeof message}`,
      index,
    );
  }
  rejectUnknownFields(message, MESSAGE_FIELDS, index);
  if (!shortString(message.exchange, true)) {
    throw new InvalidMessageError(
      'missing-exchange',
      `\`exchange\` must name an exchange (1 to ${SHORT_STRING_BYTES} bytes, ${STORABLE_TEXT_RULE}), got ${JSON.stringify(message.exchange)}`,
      index,
    );
  }
  const reserved = reservedExchangeProblem(message.exchange);
  if (reserved !== undefined) {
    // '' (the default exchange) names none: `missing-exchange`, as it always was.
    const reason = message.exchange === '' ? 'missing-exchange' : 'reserved-exchange';
    throw new InvalidMessageError(reason, `\`exchange\` ${reserved}`, index);
  }
  if (!shortString(message.routingKey, true)) {
    throw new InvalidMessageError(
      'invalid-routing-key',
      `\`routingKey\` must be a string of at most ${SHORT_STRING_BYTES} bytes, ${STORABLE_TEXT_RULE}${routingKeyGot(message.routingKey)}`,
      index,
    );
  }
  // null is refused, not taken for none: as for options, it is a value left empty upstream.
  const delayMs = message.delayMs === undefined ? 0 : message.delayMs;
  if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > MAX_DELAY_MS) {
    throw new InvalidMessageError(
      'invalid-delay',
      `\`delayMs\` must be a whole number of milliseconds from 0 to ${MAX_DELAY_MS} (366 days), got ${describeValue(delayMs)}${typeof delayMs === 'number' && delayMs > 1e12 ? ': a delay, not an epoch timestamp' : ''}`,
      index,
    );
  }
  const { payload, contentType } = encodePayload(
    message.payload,
    message.contentType,
    index,
    maxMessageBytes,
  );
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
