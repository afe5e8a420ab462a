import type { ParkedMessage } from '../dead-letters/parked-messages.js';
import type { QueuedDeadLetter } from '../dead-letters/queued-dead-letter.js';

/**
 * A parked row as the dashboard's API returns it: what an operator needs to decide on a replay,
 * and nothing more. Payloads and headers stay out, since they may carry personal data or
 * tokens; `outboxkit dead-letters show` reads them when needed.
 */
export interface ParkedRowView {
  readonly id: string;
  readonly messageId: string;
  readonly exchange: string;
  readonly routingKey: string;
  readonly orderingKey: string | null;
  readonly reason: string;
  readonly lastError: string | null;
  readonly attempts: number;
  readonly createdAt: string;
  readonly parkedAt: string;
  readonly payloadBytes: number;
}

/** A message of a dead-letter queue as the dashboard's API returns it; see `ParkedRowView`. */
export interface QueuedDeadLetterView {
  readonly messageId: string | null;
  readonly exchange: string | null;
  readonly routingKey: string | null;
  readonly reason: string | null;
  readonly error: string | null;
  readonly attempts: number | null;
  readonly consumer: string | null;
  readonly deadAt: string | null;
  readonly payloadBytes: number;
}

export function parkedRowView(m: ParkedMessage): ParkedRowView {
  return {
    id: m.id,
    messageId: m.messageId,
    exchange: m.exchange,
    routingKey: m.routingKey,
    orderingKey: m.orderingKey,
    reason: m.reason,
    lastError: m.lastError,
    attempts: m.attempts,
    createdAt: m.createdAt.toISOString(),
    parkedAt: m.parkedAt.toISOString(),
    payloadBytes: m.payloadBytes,
  };
}

export function queuedDeadLetterView(d: QueuedDeadLetter): QueuedDeadLetterView {
  return {
    messageId: d.messageId ?? null,
    exchange: d.exchange ?? null,
    routingKey: d.routingKey ?? null,
    reason: d.reason ?? null,
    error: d.error ?? null,
    attempts: d.attempts ?? null,
    consumer: d.consumer ?? null,
    deadAt: d.deadAt?.toISOString() ?? null,
    payloadBytes: d.payloadBytes,
  };
}
