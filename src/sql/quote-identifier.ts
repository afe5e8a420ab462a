import { ConfigurationError } from '../errors/configuration-error.js';

/** Quotes a Postgres identifier so any configured name is safe to splice into SQL. */
export function quoteIdentifier(name: string, option = 'schema'): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 63) {
    throw new ConfigurationError(
      option,
      `must be a name of 1 to 63 characters, got ${JSON.stringify(name)}`,
    );
  }
  if (name.includes('\u0000')) {
    throw new ConfigurationError(option, 'must not contain a NUL character');
  }
  return `"${name.replaceAll('"', '""')}"`;
}
