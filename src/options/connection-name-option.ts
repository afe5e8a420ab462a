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
  const bytes = Buffer.byteLength(value);
  if (bytes > MAX_CONNECTION_NAME_BYTES) {
    throw new ConfigurationError(
      'connectionName',
      `must be at most ${MAX_CONNECTION_NAME_BYTES} bytes, got ${bytes}: it travels in the connection's first frame, which RabbitMQ reads only up to 4096 bytes, and a longer one times out every connect`,
    );
  }
  return value;
}

/** Leaves room in the broker's 4096-byte first frame for amqplib's properties and the login. */
export const MAX_CONNECTION_NAME_BYTES = 1024;
