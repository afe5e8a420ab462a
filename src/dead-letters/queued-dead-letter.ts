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

const date = (value: unknown): Date | undefined => {
  const s = text(value);
  if (s === undefined) return undefined;
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? undefined : d;
};

/** The broker's first `x-death` entry, for messages it dead-lettered itself (rejected, expired). */
function firstDeath(headers: Record<string, unknown>): Record<string, unknown> | undefined {
  const deaths = headers['x-death'];
  return Array.isArray(deaths) ? (deaths[0] as Record<string, unknown> | undefined) : undefined;
}

/** Reads what a dead-lettered message says about itself. */
export function describeDeadLetter(queue: string, message: Message): QueuedDeadLetterDetail {
  const p = message.properties;
  const headers: Record<string, unknown> = p.headers ?? {};
  const death = firstDeath(headers);
  const deathKeys = death?.['routing-keys'];
  const h = OUTBOXKIT_HEADERS;
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
    reason: text(headers[h.reason]) ?? text(headers['x-first-death-reason']),
    error: text(headers[h.error]),
    errorName: text(headers[h.errorName]),
    attempts: typeof attempts === 'number' ? attempts : undefined,
    consumer: text(headers[h.consumer]),
    consumedFrom: text(headers[h.queue]) ?? text(death?.['queue']),
    firstFailedAt: date(headers[h.firstFailedAt]),
    // AMQP timestamps are whole seconds; the broker's x-death time is one.
    deadAt:
      date(headers[h.failedAt]) ??
      (death?.['time'] instanceof Date
        ? death['time']
        : typeof p.timestamp === 'number'
          ? new Date(p.timestamp * 1000)
          : undefined),
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
