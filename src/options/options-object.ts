import { ConfigurationError } from '../errors/configuration-error.js';
import { describeValue } from '../util/describe-value.js';
import { rejectUnknownOptions } from './unknown-options.js';

/**
 * The options object `value` of a function or constructor (`{}` when left out), after refusing
 * anything but a plain object and any name that is none of `known`. A string in its place
 * (`migrate(pool, 'billing')`) would otherwise read as "no options" and act on the default
 * schema without a word.
 *
 * @param argument how the error names the argument: `options`, `migrate's options`.
 */
export function optionsObject<T extends object>(
  argument: string,
  value: T | undefined,
  known: readonly string[],
  owner: string,
): T {
  if (value === undefined) return {} as T;
  return checkedOptions(argument, value, known, { owner });
}

/**
 * `value` after refusing anything but a plain object (naming what else `name` takes, `orElse`)
 * and any key that is none of `known` (named with `prefix`, `retry.backoff.maxMS`).
 */
export function checkedOptions<T extends object>(
  name: string,
  value: T,
  known: readonly string[],
  how: { readonly owner: string; readonly prefix?: string; readonly orElse?: string },
): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigurationError(
      name,
      `must be an object { ${known.join(', ')} }, or ${how.orElse ?? 'left out'}; got ${describeValue(value)}`,
    );
  }
  rejectUnknownOptions(value, known, { owner: how.owner, prefix: how.prefix });
  return value;
}
