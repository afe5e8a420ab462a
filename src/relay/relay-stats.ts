import { LatencyHistogram } from '../metrics/latency-histogram.js';

/** Running totals of one relay, for logs, metrics and tests. */
export interface RelayStats {
  /** Rows confirmed by the broker and deleted. */
  published: number;
  /** Rows moved to the parked table. */
  parked: number;
  /** Rows scheduled for another attempt. */
  retried: number;
  /**
   * Of `retried`, rows that failed for the broker's or the network's sake (a nack, no confirm in
   * time, a closed channel or connection): they are retried for as long as that lasts, never
   * parked.
   */
  infrastructureRetries: number;
  /** Rows put off, no attempt counted, because their exchange does not exist (yet). */
  deferred: number;
  /**
   * Rows released untouched, claimable again at once and no attempt counted: the relay stopped
   * before their confirm, or the connection to the broker went down under them (after the
   * channel had confirmed others; see docs/reliability.md).
   */
  released: number;
  batches: number;
  /** Errors that made a lane back off (database or broker trouble). */
  errors: number;
  /**
   * Time from publishing a message to the broker's answer (ack, nack or return), per message.
   * Logged as its count and sum.
   */
  readonly publishSeconds: LatencyHistogram;
}

export function emptyRelayStats(): RelayStats {
  return {
    published: 0,
    parked: 0,
    retried: 0,
    infrastructureRetries: 0,
    deferred: 0,
    released: 0,
    batches: 0,
    errors: 0,
    publishSeconds: new LatencyHistogram(),
  };
}
