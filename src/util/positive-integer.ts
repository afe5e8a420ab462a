import { ConfigurationError } from '../errors/configuration-error.js';
import { describeValue } from './describe-value.js';

/**
 * Returns `value`, or `fallback` when it is `undefined` (not `null`: a `null`, from JSON or a
 * config merge, is refused rather than taken for "the default"), after checking that it is a positive
 * safe integer; otherwise throws a `ConfigurationError` naming `option`. Every count, size and
 * duration option goes through here, so they all reject the same values with the same message.
 *
 * @example
 * const batchSize = positiveInteger('batchSize', options.batchSize, 500);
 */
export function positiveInteger(
  option: string,
  value: unknown,
  fallback?: number,
  limit?: IntegerLimit,
): number {
  const v = value === undefined ? fallback : value;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    // A number as it is; anything else with its kind, so that '4' does not read as 4.
    const got = typeof v === 'number' ? String(v) : describeValue(v);
    throw new ConfigurationError(option, `must be a positive integer, got ${got}`);
  }
  if (limit && v > limit.max) {
    throw new ConfigurationError(
      option,
      `must be at most ${limit.text ?? limit.max}: ${limit.why}; got ${v}`,
    );
  }
  return v;
}

/** The most an integer option takes, and why, for the message. */
export interface IntegerLimit {
  readonly max: number;
  /** How the limit reads: `65535 s`; the bare number by default. */
  readonly text?: string;
  readonly why: string;
}
