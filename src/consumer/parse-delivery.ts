import { isUtf8 } from 'node:buffer';
import type { ConsumeMessage } from 'amqplib';
import { businessKeyProblem, quoteKey } from '../protocol/business-key.js';
import { withoutHops } from '../protocol/copy-headers.js';
import { type DeadLetterReason, OUTBOXKIT_HEADERS } from '../protocol/dead-letter-headers.js';
import { isJsonMediaType } from '../protocol/json-media-type.js';
import { mediaType } from '../protocol/media-type.js';
import { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from '../protocol/message-headers.js';
import { valueText } from '../util/thrown-text.js';
import type { MessageInfo } from './consumer-definition.js';
import { checkPayload } from './payload-validator.js';
import type { ResolvedConsumer } from './resolve-consumer.js';

/** A delivery that passed every check, ready for its handler. */
export interface ParsedDelivery {
  readonly message: ConsumeMessage;
  readonly payload: unknown;
  readonly info: MessageInfo;
  readonly businessKey: string;
  /** Failed attempts before this delivery, as counted on the retry copies. */
  readonly failedAttempts: number;
}

/** A delivery that can never succeed, and why. */
export interface RejectedDelivery {
  readonly message: ConsumeMessage;
  readonly info: MessageInfo;
  readonly reason: DeadLetterReason;
  readonly error: Error;
}

export type ParseResult =
  | { readonly ok: true; readonly delivery: ParsedDelivery }
  | { readonly ok: false; readonly rejection: RejectedDelivery };

const ACCEPTED_ENCODINGS = new Set(['', 'identity', 'utf-8', 'utf8']);

/** The metadata of a delivery, reading the original exchange and routing key of a retry copy. */
export function messageInfo(message: ConsumeMessage, failedAttempts: number): MessageInfo {
  const { fields, properties } = message;
  const published: Record<string, unknown> = properties.headers ?? {};
  // A retry copy's hops were dropped when it was sent: what the broker added since is its wait
  // in outboxkit's own delay queue, not the publisher's.
  const headers =
    published[OUTBOXKIT_HEADERS.retries] === undefined ? published : withoutHops(published);
  const text = (value: unknown) =>
    typeof value === 'string' && value.length > 0 ? value : undefined;
  return {
    messageId: text(properties.messageId),
    headers,
    redelivered: fields.redelivered,
    attempt: failedAttempts + 1,
    exchange: text(headers[OUTBOXKIT_HEADERS.originalExchange]) ?? fields.exchange,
    routingKey:
      typeof headers[OUTBOXKIT_HEADERS.originalRoutingKey] === 'string'
        ? (headers[OUTBOXKIT_HEADERS.originalRoutingKey] as string)
        : fields.routingKey,
    contentType: text(properties.contentType),
    correlationId: text(properties.correlationId),
    causationId: text(headers[CAUSATION_ID_HEADER]),
    // AMQP timestamps are whole seconds.
    timestamp: typeof properties.timestamp === 'number' ? properties.timestamp * 1000 : undefined,
    orderingKey: text(headers[ORDERING_KEY_HEADER]),
  };
}

function failedAttemptsOf(message: ConsumeMessage): number {
  const value = message.properties.headers?.[OUTBOXKIT_HEADERS.retries];
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/**
 * Checks a delivery before any transaction opens: content type and encoding, required headers,
 * JSON, the definition's validator, the business key (see `businessKeyProblem`). A message
 * failing here can never succeed, so it is dead-lettered, not retried.
 */
export async function parseDelivery(
  consumer: ResolvedConsumer,
  message: ConsumeMessage,
): Promise<ParseResult> {
  const failedAttempts = failedAttemptsOf(message);
  const info = messageInfo(message, failedAttempts);
  const reject = (reason: DeadLetterReason, error: unknown): ParseResult => ({
    ok: false,
    rejection: {
      message,
      info,
      reason,
      error: error instanceof Error ? error : new Error(valueText(error)),
    },
  });

  // A message without a content type is taken as JSON, what most publishers mean by it.
  const type = info.contentType === undefined ? 'application/json' : mediaType(info.contentType);
  if (!consumer.contentTypes.includes(type)) {
    return reject(
      'unsupported-content-type',
      `content type "${info.contentType}" is not one of ${consumer.contentTypes.join(', ')}`,
    );
  }
  const encoding = message.properties.contentEncoding;
  if (
    encoding !== undefined &&
    !(typeof encoding === 'string' && ACCEPTED_ENCODINGS.has(encoding.toLowerCase()))
  ) {
    return reject(
      'unsupported-content-encoding',
      `content encoding "${String(encoding)}" is not supported`,
    );
  }
  for (const name of consumer.requiredHeaders) {
    if (info.headers[name] === undefined || info.headers[name] === null) {
      return reject('missing-header', `required header "${name}" is missing`);
    }
  }

  let payload: unknown = message.content;
  if (isJsonMediaType(type)) {
    // Decoding would make U+FFFD of bytes that are not UTF-8: a payload nobody sent.
    if (!isUtf8(message.content)) {
      return reject('invalid-json', 'payload is not valid UTF-8, which JSON text must be');
    }
    try {
      payload = JSON.parse(message.content.toString('utf8'));
    } catch (error) {
      return reject('invalid-json', `payload is not valid JSON: ${(error as Error).message}`);
    }
  }

  const { validate, businessKey } = consumer.definition;
  if (validate) {
    const checked = await checkPayload(validate, payload, info);
    if (!checked.ok) return reject('validation-failed', checked.problem);
    payload = checked.payload;
  }

  let key: unknown;
  if (businessKey) {
    try {
      key = businessKey(payload, info);
    } catch (error) {
      return reject('invalid-business-key', error);
    }
    if (typeof key !== 'string' || key.length === 0) {
      return reject(
        'invalid-business-key',
        `businessKey returned ${JSON.stringify(key)}, not a non-empty string`,
      );
    }
  } else {
    const id = info.messageId;
    // A blank id is a value left empty upstream (the writer refuses one): as the key it would
    // merge unrelated messages, the second acked as a duplicate without its effect.
    if (id === undefined || id.trim() === '') {
      return reject(
        'missing-message-id',
        `the message has ${id === undefined ? 'no' : 'a blank'} message id to deduplicate by; publish with messageId, or give the consumer a businessKey function`,
      );
    }
    key = id;
  }
  // A key Postgres cannot store as given would fail every attempt, or merge with another key.
  const problem = businessKeyProblem(key as string);
  if (problem !== undefined) {
    const what = businessKey ? 'the business key' : 'the message id (the business key)';
    return reject('invalid-business-key', `${what} ${quoteKey(key as string)} ${problem}`);
  }

  return {
    ok: true,
    delivery: { message, payload, info, businessKey: key as string, failedAttempts },
  };
}
