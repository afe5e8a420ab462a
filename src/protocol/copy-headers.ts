import { thrownText, valueText } from '../util/thrown-text.js';
import {
  BROKER_DEATH_HEADERS,
  type DeadLetterReason,
  OUTBOXKIT_HEADERS,
  REPLAYED_AT_HEADER,
} from './dead-letter-headers.js';

/*
 * The headers of the three copies outboxkit publishes of a delivered message: a retry waiting
 * in a delay queue, a dead letter, and a replayed dead letter. Each starts from the original's
 * headers, so the publisher's own (ordering key, causation id, trace context) travel with it.
 */

const MAX_ERROR_CHARS = 2000;
/** An error's name is a class name; a longer one is not, and must not fill the headers. */
const MAX_ERROR_NAME_CHARS = 200;

/** What the consumer knows of a failed attempt, for the copy's headers. */
export interface FailureRecord {
  readonly error: unknown;
  readonly at: Date;
  /** When the first failure happened, if it is not recorded in the headers (in-place retries). */
  readonly firstAt?: Date | undefined;
  /** Where the message came from first. */
  readonly exchange: string;
  readonly routingKey: string;
  /** The queue it was consumed from (dead letters only). */
  readonly queue?: string | undefined;
}

/** At most `max` characters, the ellipsis included, without splitting a surrogate pair. */
function truncated(message: string, max = MAX_ERROR_CHARS): string {
  if (message.length <= max) return message;
  const cut = message.slice(0, max - 1);
  return `${/[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut}…`;
}

function describeError(error: unknown): { message: string; name: string } {
  return {
    message: truncated(thrownText(error)),
    name: truncated(
      error instanceof Error ? valueText(error.name) : typeof error,
      MAX_ERROR_NAME_CHARS,
    ),
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
    ...(failure.queue !== undefined && { [OUTBOXKIT_HEADERS.queue]: failure.queue }),
  };
  delete headers[OUTBOXKIT_HEADERS.retries];
  return headers;
}

/** `headers` without the broker's record of dead-letter hops (a delay queue's `x-death`). */
export function withoutHops(headers: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out = { ...headers };
  for (const name of BROKER_DEATH_HEADERS) delete out[name];
  return out;
}

/** Where a replayed dead letter goes. */
export type ReplayTarget =
  /** Only the consumer that gave up on it, through the default exchange. */
  | 'queue'
  /** The exchange and routing key it was first published with: every bound queue gets it. */
  | 'exchange';

/**
 * The headers of a replayed copy: the dead-letter record and any attempt counter are dropped so
 * the consumer starts with attempt 1, as for a new message. The message id and every header of
 * the publisher's own (ordering key, causation id...) stay, so the business key is the same and
 * the replay still dedupes. Sent to the queue, the copy keeps the original exchange and routing
 * key headers: the consumer reads them for `ctx.exchange` and `ctx.routingKey`, since the copy
 * itself arrives through the default exchange.
 */
export function replayHeaders(
  headers: Readonly<Record<string, unknown>>,
  target: ReplayTarget,
  now = new Date(),
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...headers };
  for (const name of Object.values(OUTBOXKIT_HEADERS)) {
    const keep =
      target === 'queue' &&
      (name === OUTBOXKIT_HEADERS.originalExchange ||
        name === OUTBOXKIT_HEADERS.originalRoutingKey);
    if (!keep) delete out[name];
  }
  for (const name of BROKER_DEATH_HEADERS) delete out[name];
  out[REPLAYED_AT_HEADER] = now.toISOString();
  return out;
}
