import { ConfigurationError } from '../errors/configuration-error.js';
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
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigurationError(
      argument,
      `must be an object { ${known.join(', ')} }, or left out; got ${describe(value)}`,
    );
  }
  rejectUnknownOptions(value, known, { owner });
  return value;
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
