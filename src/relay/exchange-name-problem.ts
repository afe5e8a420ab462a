import { reservedExchangeProblem } from '../amqp/predefined-exchanges.js';
import { SHORT_STRING_BYTES } from '../amqp/short-string.js';

/**
 * Why no message can ever be published to an exchange of this name, as a row's park reason, or
 * undefined: the writer's rules for `exchange`, for rows written by SQL, in the writer's words.
 * `''` is RabbitMQ's default exchange, which the writer refuses (and the broker refuses to
 * check, 403); amqplib cannot send a name over 255 bytes; no client can declare an `amq.*`
 * exchange.
 */
export function exchangeNameProblem(name: string): string | undefined {
  const bytes = Buffer.byteLength(name);
  if (bytes > SHORT_STRING_BYTES) {
    return `invalid exchange: \`exchange\` must name an exchange (1 to ${SHORT_STRING_BYTES} bytes), got ${bytes} bytes`;
  }
  const reserved = reservedExchangeProblem(name);
  return reserved === undefined ? undefined : `invalid exchange: \`exchange\` ${reserved}`;
}
