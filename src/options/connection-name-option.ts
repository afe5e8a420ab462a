import { ConfigurationError } from '../errors/configuration-error.js';
import { describeValue } from '../util/describe-value.js';

/**
 * `connectionName` (relay, consumer host), undefined when it is left out: a non-empty string,
 * since it is how an operator tells outboxkit's connections apart in the broker's management UI.
 */
export function connectionNameOption(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') {
    throw new ConfigurationError(
      'connectionName',
      `must be a non-empty string, got ${describeValue(value)}`,
    );
  }
  return value;
}
