import { ConfigurationError } from '../errors/configuration-error.js';
import { optionsObject } from '../options/options-object.js';
import { describeValue } from '../util/describe-value.js';

/**
 * The options of a dead-letter method (`list`, `replay`, `purge`, ...), checked before anything
 * is read or changed: an option it does not take is refused rather than ignored, since
 * `purge({}, { dryRun: true })` would otherwise purge everything, and `onProgress` must be a
 * function, or the rows go and the call fails after.
 */
export function workOptions<T extends object>(
  value: T | undefined,
  known: readonly string[],
  method: string,
): T {
  const options = optionsObject('options', value, known, method);
  const { onProgress } = options as { onProgress?: unknown };
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new ConfigurationError(
      'onProgress',
      `must be a function (done, failed) => void, got ${describeValue(onProgress)}`,
    );
  }
  return options;
}
