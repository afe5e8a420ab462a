import type { ParkedMessage } from '../dead-letters/parked-messages.js';
import type { QueuedDeadLetter } from '../dead-letters/queued-dead-letter.js';
import type { ParkedRowView, QueuedDeadLetterView } from './page/dashboard-api.js';

export type { ParkedRowView, QueuedDeadLetterView };

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
