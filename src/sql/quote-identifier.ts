import { ConfigurationError } from '../errors/configuration-error.js';
import { unstorableText } from '../util/storable-text.js';

/** Quotes a Postgres identifier so any configured name is safe to splice into SQL. */
export function quoteIdentifier(name: string, option = 'schema'): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 63) {
    throw new ConfigurationError(
      option,
      `must be a name of 1 to 63 characters, got ${JSON.stringify(name)}`,
    );
  }
  // A lone surrogate would name another schema than the one given (Postgres stores U+FFFD).
  const unstorable = unstorableText(name);
  if (unstorable !== undefined) throw new ConfigurationError(option, unstorable);
  return `"${name.replaceAll('"', '""')}"`;
}
