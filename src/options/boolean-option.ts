import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * Returns a boolean option, or `fallback` when it is undefined, after refusing anything but
 * `true` and `false`. A truthy string flipped the option it was meant to turn off
 * (`ordered: 'false'` ran ordered, `listen: 'false'` still listened), and a check like
 * `=== true` turned `migrate: 'yes'` off without a word. Every boolean option is read here.
 */
export function booleanOption(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new ConfigurationError(option, `must be true or false, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}' (a string)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${String(value)} (a ${typeof value})`;
}
