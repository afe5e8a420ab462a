import { ConfigurationError } from '../errors/configuration-error.js';
import { closestName } from '../util/closest-name.js';
import { unstorableText } from '../util/storable-text.js';

/**
 * Which dead letters an operation applies to. Every given field must match; an empty filter
 * matches everything. A field not listed here, an empty or mistyped value is refused
 * (`checkFilter`), never taken for "no filter".
 */
// No `| undefined` on the fields, unlike options: a replay or purge refuses a field given as
// undefined (`{ messageId: id }` with `id` unset would act on every dead letter), and under
// `exactOptionalPropertyTypes` the compiler refuses it first.
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

/** Every field of `DeadLetterFilter`: a name that is none of these is refused. */
export const DEAD_LETTER_FILTER_NAMES = [
  'exchange',
  'reason',
  'olderThanMs',
  'newerThanMs',
  'messageId',
] as const satisfies readonly (keyof DeadLetterFilter)[];

const TEXT_FIELDS = ['exchange', 'reason', 'messageId'] as const;
const AGE_FIELDS = ['olderThanMs', 'newerThanMs'] as const;
/** A thousand years. */
const MAX_AGE_MS = 1000 * 365.25 * 24 * 3600 * 1000;

/**
 * Rejects a filter that cannot mean what its caller meant, naming the field. A filter that is
 * not checked fails open: a misspelt `reasn`, an empty `reason` or a `messageId: null` would
 * otherwise match every dead letter, and a bulk purge would delete them all. A field whose
 * value is `undefined` sets nothing, as with options, except for `bulk` (a replay or a purge):
 * there `{ messageId: id }` with an `id` that happens to be undefined would act on every dead
 * letter. The filter itself is required: `{}` says "every dead letter" on purpose, a missing
 * argument may not.
 */
export function checkFilter(filter: DeadLetterFilter, bulk = false): DeadLetterFilter {
  if (filter === undefined) {
    throw new ConfigurationError(
      'filter',
      'is required: pass {} to act on every dead letter, or the fields to select by',
    );
  }
  if (filter === null || typeof filter !== 'object' || Array.isArray(filter)) {
    throw new ConfigurationError(
      'filter',
      `must be an object of ${DEAD_LETTER_FILTER_NAMES.join(', ')}, got ${shown(filter)}`,
    );
  }
  for (const [name, value] of Object.entries(filter)) {
    if (bulk && value === undefined) {
      throw new ConfigurationError(
        name,
        'is undefined: a replay or purge would then act on every dead letter; leave it out to match any',
      );
    }
    if (value === undefined || (DEAD_LETTER_FILTER_NAMES as readonly string[]).includes(name)) {
      continue;
    }
    const guess = closestName(name, DEAD_LETTER_FILTER_NAMES);
    throw new ConfigurationError(
      name,
      `is not a dead-letter filter${guess ? `; did you mean \`${guess}\`?` : ''} (the filters are ${DEAD_LETTER_FILTER_NAMES.join(', ')})`,
    );
  }
  for (const name of TEXT_FIELDS) {
    const value: unknown = filter[name];
    if (value === undefined) continue;
    if (typeof value !== 'string') {
      throw new ConfigurationError(name, `must be a string, got ${shown(value)}`);
    }
    if (value.length === 0) {
      throw new ConfigurationError(
        name,
        name === 'reason'
          ? 'must not be empty: an empty reason would match every dead letter; leave it out to match any'
          : 'must not be empty; leave it out to match any',
      );
    }
    // Postgres refuses NUL in the parked rows' query; nothing stored can contain it anyway.
    const unstorable = unstorableText(value);
    if (unstorable !== undefined) throw new ConfigurationError(name, unstorable);
  }
  for (const name of AGE_FIELDS) {
    const value: unknown = filter[name];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new ConfigurationError(name, `must be a duration of 0 ms or more, got ${shown(value)}`);
    }
    // Beyond Postgres' intervals, and beyond the age of any dead letter.
    if (value > MAX_AGE_MS) {
      throw new ConfigurationError(
        name,
        `must be at most ${MAX_AGE_MS} ms (1,000 years), got ${shown(value)}`,
      );
    }
  }
  return filter;
}

/** A value as an error shows it: strings quoted, so `"5"` is not taken for 5. */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  return value !== null && typeof value === 'object' ? 'an object' : String(value);
}

/**
 * Rejects a message id that is not one, naming `messageId`: as a filter, a missing one would
 * match the first dead letter, whatever it is.
 */
export function checkMessageId(messageId: string): string {
  if (typeof messageId !== 'string' || messageId.length === 0) {
    throw new ConfigurationError(
      'messageId',
      `must be the message id of a dead letter, got ${typeof messageId === 'string' ? 'an empty string' : shown(messageId)}`,
    );
  }
  return messageId;
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
