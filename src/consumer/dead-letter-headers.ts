/** Headers outboxkit sets on retried and dead-lettered messages. */
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
});

/** Why a message went to the dead-letter queue. */
export type DeadLetterReason =
  /** The handler failed `retry.maxAttempts` times. */
  | 'retries-exhausted'
  /** The handler threw a `PermanentError`. */
  | 'permanent-error'
  | 'unsupported-content-type'
  | 'unsupported-content-encoding'
  | 'invalid-json'
  | 'missing-header'
  /** No message id, and no `businessKey` function to derive a key from the payload. */
  | 'missing-message-id'
  /** The definition's `validate` threw. */
  | 'validation-failed'
  /** `businessKey` threw or returned something other than a non-empty string. */
  | 'invalid-business-key';

/** Headers from the broker's own dead-lettering, which describe a hop that no longer matters. */
const BROKER_DEATH_HEADERS = [
  'x-death',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
];

const MAX_ERROR_CHARS = 2000;

export interface FailureRecord {
  readonly error: unknown;
  readonly at: Date;
  /** When the first failure happened, if it is not recorded in the headers (in-place retries). */
  readonly firstAt?: Date;
  /** Where the message came from first. */
  readonly exchange: string;
  readonly routingKey: string;
}

function withoutHops(headers: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out = { ...headers };
  for (const name of BROKER_DEATH_HEADERS) delete out[name];
  return out;
}

function describeError(error: unknown): { message: string; name: string } {
  const message = error instanceof Error ? error.message : String(error);
  return {
    message: message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS)}…` : message,
    name: error instanceof Error ? error.name : typeof error,
  };
}

/** Headers of the copy that waits in a delay queue for attempt `failedAttempts + 1`. */
export function retryHeaders(
  original: Readonly<Record<string, unknown>>,
  failedAttempts: number,
  failure: FailureRecord,
): Record<string, unknown> {
  const { message, name } = describeError(failure.error);
  return {
    ...withoutHops(original),
    [OUTBOXKIT_HEADERS.retries]: failedAttempts,
    [OUTBOXKIT_HEADERS.firstFailedAt]:
      original[OUTBOXKIT_HEADERS.firstFailedAt] ?? (failure.firstAt ?? failure.at).toISOString(),
    [OUTBOXKIT_HEADERS.failedAt]: failure.at.toISOString(),
    [OUTBOXKIT_HEADERS.error]: message,
    [OUTBOXKIT_HEADERS.errorName]: name,
    [OUTBOXKIT_HEADERS.originalExchange]: failure.exchange,
    [OUTBOXKIT_HEADERS.originalRoutingKey]: failure.routingKey,
  };
}

/** Headers of the copy that goes to the dead-letter queue. */
export function deadLetterHeaders(
  original: Readonly<Record<string, unknown>>,
  reason: DeadLetterReason,
  consumer: string,
  attempts: number,
  failure: FailureRecord,
): Record<string, unknown> {
  const { message, name } = describeError(failure.error);
  const headers: Record<string, unknown> = {
    ...withoutHops(original),
    [OUTBOXKIT_HEADERS.reason]: reason,
    [OUTBOXKIT_HEADERS.error]: message,
    [OUTBOXKIT_HEADERS.errorName]: name,
    [OUTBOXKIT_HEADERS.attempts]: attempts,
    [OUTBOXKIT_HEADERS.firstFailedAt]:
      original[OUTBOXKIT_HEADERS.firstFailedAt] ?? (failure.firstAt ?? failure.at).toISOString(),
    [OUTBOXKIT_HEADERS.failedAt]: failure.at.toISOString(),
    [OUTBOXKIT_HEADERS.consumer]: consumer,
    [OUTBOXKIT_HEADERS.originalExchange]: failure.exchange,
    [OUTBOXKIT_HEADERS.originalRoutingKey]: failure.routingKey,
  };
  delete headers[OUTBOXKIT_HEADERS.retries];
  return headers;
}
