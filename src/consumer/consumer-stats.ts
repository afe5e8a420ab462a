/** Running totals of one consumer, for logs, metrics and tests. */
export interface ConsumerStats {
  /** Deliveries received from the broker, redeliveries included. */
  received: number;
  /** Deliveries the broker marked as redelivered. */
  redelivered: number;
  /** Messages whose handler committed: effects applied. */
  handled: number;
  /** Messages acked without running the handler: their key was processed before. */
  duplicates: number;
  /** Handler attempts that failed (time-outs included). */
  failures: number;
  timeouts: number;
  /** Failed messages scheduled for another attempt. */
  retried: number;
  deadLettered: number;
  /**
   * Deliveries handed back to the queue unhandled (stopping, or a retry copy not confirmed). An
   * ordered consumer's are not counted at a stop: its channel's close hands them back.
   */
  requeued: number;
  /** Transactions run again after a serialization failure or deadlock. */
  serializationRetries: number;
  /**
   * Transactions run again in place because a statement of the transaction itself (BEGIN, the
   * claim, COMMIT, or the ROLLBACK after a handler's error) found Postgres unavailable. No
   * attempt is counted.
   */
  databaseRetries: number;
  /**
   * Deliveries handed back to the broker after `databaseRetryLimitMs` of such retries (also
   * counted in `requeued`, unless an ordered consumer's channel close requeued them).
   */
  databaseRequeues: number;
  /** Transactions that held more than one delivery. */
  batches: number;
  /** Batches rolled back by a failing handler and redone one message at a time. */
  batchFallbacks: number;
}

export function emptyConsumerStats(): ConsumerStats {
  return {
    received: 0,
    redelivered: 0,
    handled: 0,
    duplicates: 0,
    failures: 0,
    timeouts: 0,
    retried: 0,
    deadLettered: 0,
    requeued: 0,
    serializationRetries: 0,
    databaseRetries: 0,
    databaseRequeues: 0,
    batches: 0,
    batchFallbacks: 0,
  };
}
