/** What became of one published row, decided by the broker or by the relay's own limits. */
export type PublishOutcome =
  /** Confirmed and routed: delete the row. */
  | { readonly kind: 'acked' }
  /** The message itself can never be published as it is: move the row to the parked table. */
  | { readonly kind: 'permanent'; readonly reason: string }
  /**
   * Returned as unroutable (`mandatory`): no queue took it. Parked at once, or with
   * `retry.unroutable` counted towards `retry.maxAttempts` like a rejection, and parked after.
   */
  | { readonly kind: 'unroutable'; readonly reason: string }
  /**
   * The broker refused the message while it was the only one in flight (it closed the channel
   * with a content or precondition error): most likely the message's fault, so it counts towards
   * `retry.maxAttempts`, after which the row is parked.
   */
  | { readonly kind: 'rejected'; readonly reason: string }
  /**
   * Nack, timeout, closed channel, lost connection: trouble of the broker or the network, not of
   * the message. Retried with backoff for as long as it takes; never parks the row.
   */
  | { readonly kind: 'transient'; readonly reason: string }
  /** Not published, for a reason outside the message (its exchange is missing): try again later. */
  | { readonly kind: 'deferred'; readonly reason: string; readonly delayMs: number }
  /**
   * Leave the row as it was, claimable again at once, without counting an attempt: not sent or
   * not settled when the relay stopped; or (with a `reason`) not sent because its channel had
   * closed already, or in flight when the connection to the broker went down after the channel
   * had confirmed other publishes.
   */
  | { readonly kind: 'released'; readonly reason?: string }
  /**
   * Not sent: an earlier row of its ordering key in the batch was not confirmed. Leave the row
   * as it was, behind that one (see `KeyRunSchedule`).
   */
  | { readonly kind: 'held' };

export const ACKED: PublishOutcome = Object.freeze({ kind: 'acked' });
export const RELEASED: PublishOutcome = Object.freeze({ kind: 'released' });
