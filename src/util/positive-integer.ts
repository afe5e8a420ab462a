import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * Returns `value`, or `fallback` when it is `undefined` (not `null`: a `null`, from JSON or a
 * config merge, is refused rather than taken for "the default"), after checking that it is a positive
 * safe integer; otherwise throws a `ConfigurationError` naming `option`. Every count, size and
 * duration option goes through here, so they all reject the same values with the same message.
 *
 * @example
 * const batchSize = positiveInteger('batchSize', options.batchSize, 500);
 */
export function positiveInteger(option: string, value: unknown, fallback?: number): number {
  const v = value === undefined ? fallback : value;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new ConfigurationError(option, `must be a positive integer, got ${String(v)}`);
  }
  return v;
}
