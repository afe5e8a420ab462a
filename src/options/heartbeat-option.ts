import { positiveInteger } from '../util/positive-integer.js';

/**
 * The AMQP heartbeat is a 16-bit field of seconds: above 65535 the broker would be sent a
 * value it cannot read. The relay and the consumer host read `heartbeatSeconds` here.
 */
export const MAX_HEARTBEAT_SECONDS = 65_535;

export function heartbeatOption(value: unknown): number {
  return positiveInteger('heartbeatSeconds', value, 10, {
    max: MAX_HEARTBEAT_SECONDS,
    text: `${MAX_HEARTBEAT_SECONDS} s`,
    why: "AMQP's heartbeat is a 16-bit field",
  });
}
