/** Headers outboxkit sets on the copies it publishes of a failed message: retries and dead letters. */
export const OUTBOXKIT_HEADERS = Object.freeze({
  /** Failed attempts so far; on retry copies only, so a replayed dead letter starts afresh. */
  retries: 'x-outboxkit-retries',
  /** Why the message was dead-lettered: a `DeadLetterReason`. */
  reason: 'x-outboxkit-reason',
  /** The last error's message. */
  error: 'x-outboxkit-error',
  /** The last error's class name. */
  errorName: 'x-outboxkit-error-name',
  /** Handler attempts made before dead-lettering (0 when the message was rejected unread). */
  attempts: 'x-outboxkit-attempts',
  /** ISO time of the first failure. */
  firstFailedAt: 'x-outboxkit-first-failed-at',
  /** ISO time of the last failure: when the message was dead-lettered. */
  failedAt: 'x-outboxkit-failed-at',
  /** The consumer that gave up on the message. */
  consumer: 'x-outboxkit-consumer',
  /** Where the message was first published, since retries travel through other queues. */
  originalExchange: 'x-outboxkit-original-exchange',
  originalRoutingKey: 'x-outboxkit-original-routing-key',
  /**
   * The queue the consumer took it from: its own, or one of its partitions, which tells a replay
   * "back to the consumer" where that is (a partitioned consumer has no queue by its name).
   */
  queue: 'x-outboxkit-queue',
});

/** Set on a replayed dead letter: when it was replayed, for whoever looks at it later. */
export const REPLAYED_AT_HEADER = 'x-outboxkit-replayed-at';

/**
 * Set on a copy (retry, dead letter, replay) that could not carry all of the original's headers
 * within amqplib's 64 KiB and the broker's frame: the names of those it left out, largest first,
 * after those earlier copies left out. It stays on later copies and replays.
 */
export const DROPPED_HEADERS_HEADER = 'x-outboxkit-dropped-headers';

/**
 * Headers of the broker's own dead-lettering (a rejected or expired message, a delay queue's
 * TTL). They describe a hop that no longer matters once outboxkit republishes a copy.
 */
export const BROKER_DEATH_HEADERS: readonly string[] = Object.freeze([
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
]);

/** Why a message went to the dead-letter queue: the value of `x-outboxkit-reason`. */
export type DeadLetterReason =
  /** The handler failed `retry.maxAttempts` times. */
  | 'retries-exhausted'
  /** The handler threw a `PermanentError`. */
  | 'permanent-error'
  | 'unsupported-content-type'
  | 'unsupported-content-encoding'
  | 'invalid-json'
  | 'missing-header'
  /** No message id (or a blank one), and no `businessKey` function to derive a key from the payload. */
  | 'missing-message-id'
  /** The definition's `validate` threw. */
  | 'validation-failed'
  /**
   * `businessKey` threw or returned something other than a non-empty string, or the key (the
   * message id by default) contains NUL, is not well-formed Unicode, or is longer than
   * `MAX_BUSINESS_KEY_BYTES`.
   */
  | 'invalid-business-key';
