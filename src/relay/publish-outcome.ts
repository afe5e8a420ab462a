/** What became of one published row, decided by the broker or by the relay's own limits. */
export type PublishOutcome =
  /** Confirmed and routed: delete the row. */
  | { readonly kind: 'acked' }
  /** Will never be published as it is: move the row to the parked table. */
  | { readonly kind: 'permanent'; readonly reason: string }
  /** Nack, timeout, closed channel, lost connection: retry later with backoff. */
  | { readonly kind: 'transient'; readonly reason: string }
  /** Not sent or not settled when the relay stopped: leave the row as it was. */
  | { readonly kind: 'released' };

export const ACKED: PublishOutcome = Object.freeze({ kind: 'acked' });
export const RELEASED: PublishOutcome = Object.freeze({ kind: 'released' });
