import type { Message, Options } from 'amqplib';
import { OUTBOXKIT_HEADERS } from '../protocol/dead-letter-headers.js';
import { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from '../protocol/message-headers.js';
import { copyProperties } from '../protocol/message-properties.js';
import type { FilterSubject } from './dead-letter-filter.js';

/** A message in a consumer's dead-letter queue, as its headers describe it. */
export interface QueuedDeadLetter extends FilterSubject {
  /** The dead-letter queue it is in. */
  readonly queue: string;
  readonly messageId: string | undefined;
  /** The exchange and routing key it was first published with, when known. */
  readonly exchange: string | undefined;
  readonly routingKey: string | undefined;
  /** outboxkit's `DeadLetterReason`, or the broker's own reason (`rejected`, `expired`...). */
  readonly reason: string | undefined;
  readonly error: string | undefined;
  readonly errorName: string | undefined;
  /** Handler attempts made before it was dead-lettered. */
  readonly attempts: number | undefined;
  /** The consumer that gave up on it. */
  readonly consumer: string | undefined;
  /** The queue it was consumed from (the consumer's, or one of its partitions), when known. */
  readonly consumedFrom: string | undefined;
  readonly firstFailedAt: Date | undefined;
  /** When it was dead-lettered. */
  readonly deadAt: Date | undefined;
  readonly orderingKey: string | undefined;
  readonly correlationId: string | undefined;
  /** The message id of the message it was written in reply to (`x-causation-id`), if any. */
  readonly causationId: string | undefined;
  readonly contentType: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  readonly payloadBytes: number;
}

/** A queued dead letter with its payload, from `show`. */
export interface QueuedDeadLetterDetail extends QueuedDeadLetter {
  readonly payload: Buffer;
}

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value.length > 0 ? value : undefined;

/** `d`, or undefined when it holds no time. */
const valid = (d: Date): Date | undefined => (Number.isNaN(d.getTime()) ? undefined : d);

const date = (value: unknown): Date | undefined => {
  const s = text(value);
  return s === undefined ? undefined : valid(new Date(s));
};

/**
 * The broker's record of the hop that brought a message it dead-lettered itself (rejected,
 * expired, over a length or delivery limit) into this queue: the first `x-death` entry, since
 * RabbitMQ keeps them most recent first, and a message still in this queue has not died again
 * since it arrived. `x-first-death-*` describes the oldest hop, which may have been elsewhere
 * (a message rejected from another queue before it expired in the consumer's): its reason
 * beside this hop's queue and exchange would describe neither.
 */
function lastDeath(headers: Record<string, unknown>): Record<string, unknown> | undefined {
  const deaths = headers['x-death'];
  const death: unknown = Array.isArray(deaths) ? deaths[0] : undefined;
  return typeof death === 'object' && death !== null
    ? (death as Record<string, unknown>)
    : undefined;
}

/**
 * An AMQP timestamp as amqplib decodes one, `{ '!': 'timestamp', value: seconds }`, as a Date;
 * undefined for anything else or a time a Date cannot hold.
 */
function amqpTimestamp(value: unknown): Date | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { '!': type, value: seconds } = value as Record<string, unknown>;
  if (type !== 'timestamp' || typeof seconds !== 'number') return undefined;
  return valid(new Date(seconds * 1000));
}

/** Reads what a dead-lettered message says about itself. */
export function describeDeadLetter(queue: string, message: Message): QueuedDeadLetterDetail {
  const p = message.properties;
  const headers: Record<string, unknown> = p.headers ?? {};
  const h = OUTBOXKIT_HEADERS;
  // outboxkit's record when it dead-lettered the message itself, else the broker's.
  const ownReason = text(headers[h.reason]);
  const death = lastDeath(headers);
  const deathKeys = death?.['routing-keys'];
  const attempts = headers[h.attempts];
  return {
    queue,
    messageId: text(p.messageId),
    exchange: text(headers[h.originalExchange]) ?? text(death?.['exchange']),
    routingKey:
      typeof headers[h.originalRoutingKey] === 'string'
        ? (headers[h.originalRoutingKey] as string)
        : Array.isArray(deathKeys)
          ? text(deathKeys[0])
          : undefined,
    reason: ownReason ?? text(death?.['reason']),
    error: text(headers[h.error]),
    errorName: text(headers[h.errorName]),
    attempts: typeof attempts === 'number' ? attempts : undefined,
    consumer: text(headers[h.consumer]),
    consumedFrom: text(headers[h.queue]) ?? text(death?.['queue']),
    firstFailedAt: date(headers[h.firstFailedAt]),
    // The time of the record the reason comes from: a retry copy the broker dead-lettered
    // carries the time of its handler's failure too. AMQP timestamps are whole seconds.
    deadAt:
      (ownReason === undefined ? amqpTimestamp(death?.['time']) : undefined) ??
      date(headers[h.failedAt]) ??
      (typeof p.timestamp === 'number' ? new Date(p.timestamp * 1000) : undefined),
    orderingKey: text(headers[ORDERING_KEY_HEADER]),
    correlationId: text(p.correlationId),
    causationId: text(headers[CAUSATION_ID_HEADER]),
    contentType: text(p.contentType),
    headers,
    payloadBytes: message.content.length,
    payload: message.content,
  };
}

/** The properties a replayed copy keeps (see `copyProperties`), published persistent and mandatory. */
export function replayProperties(
  message: Message,
  headers: Record<string, unknown>,
): Options.Publish {
  return { ...copyProperties(message, headers), persistent: true, mandatory: true };
}
