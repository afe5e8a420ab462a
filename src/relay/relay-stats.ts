/** Running totals of one relay, for logs, metrics and tests. */
export interface RelayStats {
  /** Rows confirmed by the broker and deleted. */
  published: number;
  /** Rows moved to the parked table. */
  parked: number;
  /** Rows scheduled for another attempt. */
  retried: number;
  /** Rows released untouched because the relay stopped before their confirm. */
  released: number;
  batches: number;
  /** Errors that made a lane back off (database or broker trouble). */
  errors: number;
}

export function emptyRelayStats(): RelayStats {
  return { published: 0, parked: 0, retried: 0, released: 0, batches: 0, errors: 0 };
}
