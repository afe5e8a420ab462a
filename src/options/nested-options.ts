import { checkedOptions } from './options-object.js';

/**
 * Returns the nested option object `option` (`retry`, `retry.backoff`, `retention`, ...), or
 * undefined when it is not given, after refusing anything but a plain object and any name that
 * is none of `known` (named by its full path, `retry.backoff.maxMS`). A string, number, array or
 * `null` would otherwise read as an object without settings, and a misspelt name inside one
 * would drop its setting for the default without a word.
 */
export function nestedOptions<T extends object>(
  option: string,
  value: T | undefined,
  known: readonly string[],
  owner: string,
  /** What else the option takes, for the message: `false` for a `retention`. */
  orElse = 'left out',
): T | undefined {
  if (value === undefined) return undefined;
  return checkedOptions(option, value, known, { owner, prefix: `${option}.`, orElse });
}
