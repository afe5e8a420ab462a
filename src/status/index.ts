/** `outboxkit/status`: the outbox's backlog, lag and failures, as `outboxkit status` shows them. */
export {
  type ExchangeStatus,
  type OutboxCounts,
  type OutboxStatus,
  type OutboxStatusOptions,
  outboxStatus,
} from './outbox-status.js';
