import { ConfigurationError } from '../errors/configuration-error.js';
import { positiveInteger } from '../util/positive-integer.js';

/**
 * The AMQP heartbeat is a 16-bit field of seconds: above 65535 the broker would be sent a
 * value it cannot read. The relay and the consumer host read `heartbeatSeconds` here.
 */
export const MAX_HEARTBEAT_SECONDS = 65_535;

export function heartbeatOption(value: unknown): number {
  const seconds = positiveInteger('heartbeatSeconds', value, 10);
  if (seconds > MAX_HEARTBEAT_SECONDS) {
    throw new ConfigurationError(
      'heartbeatSeconds',
      `must be at most ${MAX_HEARTBEAT_SECONDS} s (AMQP's heartbeat is a 16-bit field); got ${seconds}`,
    );
  }
  return seconds;
}
