import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * Which dead letters an operation applies to. Every given field must match; an empty filter
 * matches everything.
 */
export interface DeadLetterFilter {
  /** The exchange the message was first published to. */
  readonly exchange?: string;
  /** A case-insensitive substring of the reason or of the last error. */
  readonly reason?: string;
  /** Only dead letters parked or dead-lettered at least this long ago. */
  readonly olderThanMs?: number;
  /** Only dead letters parked or dead-lettered at most this long ago. */
  readonly newerThanMs?: number;
  /** Only copies of this message id. */
  readonly messageId?: string;
}

/** What a filter is checked against, for dead letters read from a queue. */
export interface FilterSubject {
  readonly exchange: string | undefined;
  readonly reason: string | undefined;
  readonly error: string | undefined;
  readonly messageId: string | undefined;
  readonly deadAt: Date | undefined;
}

/** Rejects a filter with values that cannot mean anything, naming the field. */
export function checkFilter(filter: DeadLetterFilter): DeadLetterFilter {
  for (const name of ['olderThanMs', 'newerThanMs'] as const) {
    const value = filter[name];
    if (value !== undefined && (!Number.isFinite(value) || value < 0)) {
      throw new ConfigurationError(name, `must be a duration of 0 ms or more, got ${value}`);
    }
  }
  return filter;
}

/** Whether a dead letter read from a queue passes the filter; `now` is the reference for ages. */
export function matchesFilter(
  filter: DeadLetterFilter,
  subject: FilterSubject,
  now = Date.now(),
): boolean {
  if (filter.exchange !== undefined && subject.exchange !== filter.exchange) return false;
  if (filter.messageId !== undefined && subject.messageId !== filter.messageId) return false;
  if (filter.reason !== undefined) {
    const needle = filter.reason.toLowerCase();
    const hay = `${subject.reason ?? ''}\n${subject.error ?? ''}`.toLowerCase();
    if (!hay.includes(needle)) return false;
  }
  if (filter.olderThanMs !== undefined || filter.newerThanMs !== undefined) {
    // A dead letter of unknown age matches no age filter: replaying or purging it by age
    // would be a guess.
    if (subject.deadAt === undefined) return false;
    const age = now - subject.deadAt.getTime();
    if (filter.olderThanMs !== undefined && age < filter.olderThanMs) return false;
    if (filter.newerThanMs !== undefined && age > filter.newerThanMs) return false;
  }
  return true;
}
