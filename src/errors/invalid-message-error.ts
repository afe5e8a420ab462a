import { OutboxkitError } from './outboxkit-error.js';

export type InvalidMessageReason =
  | 'not-a-message'
  | 'missing-exchange'
  | 'reserved-exchange'
  | 'invalid-routing-key'
  | 'invalid-message-id'
  | 'invalid-ordering-key'
  | 'invalid-delay'
  | 'invalid-correlation-id'
  | 'invalid-causation-id'
  | 'payload-not-serializable'
  | 'payload-too-large'
  | 'missing-content-type'
  | 'invalid-content-type'
  | 'invalid-header'
  | 'unknown-field'
  | 'duplicate-message-id';

/**
 * A message handed to the writer cannot be stored. Thrown before anything is written, so the
 * caller's transaction is untouched and may go on or roll back.
 */
export class InvalidMessageError extends OutboxkitError {
  readonly reason: InvalidMessageReason;
  /** Position of the offending message in an `addMany` call; 0 for `add`. */
  readonly index: number;

  constructor(reason: InvalidMessageReason, detail: string, index = 0, cause?: unknown) {
    super(reason, `Invalid outbox message #${index}: ${detail}`, { cause });
    this.reason = reason;
    this.index = index;
  }
}
