import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * `value` if it is an array of non-empty strings, `fallback` when it is left out; otherwise a
 * `ConfigurationError` naming `option`. A lone string (`allowedHosts: '*'`) would otherwise be
 * read character by character, or fail deep inside with a TypeError.
 */
export function stringList(
  option: string,
  value: unknown,
  fallback: readonly string[],
): readonly string[] {
  if (value === undefined) return fallback;
  if (!Array.isArray(value)) {
    throw new ConfigurationError(
      option,
      `must be an array of strings, got ${value === null ? 'null' : typeof value}`,
    );
  }
  value.forEach((item, i) => {
    if (typeof item !== 'string' || item === '') {
      throw new ConfigurationError(
        `${option}[${i}]`,
        `must be a non-empty string, got ${String(item)}`,
      );
    }
  });
  return value;
}
