import { defaultExchangeProblem, isDefaultExchange } from './default-exchange.js';

/**
 * The `amq.*` exchanges every RabbitMQ broker declares itself. Any other `amq.*` name can never
 * exist: RabbitMQ refuses to let clients declare one (403), so messages to it would wait in the
 * outbox for good. `amq.rabbitmq.*` (trace, log) are internal: clients cannot publish to them.
 */
export const PREDEFINED_EXCHANGES: ReadonlySet<string> = new Set([
  'amq.direct',
  'amq.fanout',
  'amq.topic',
  'amq.headers',
  'amq.match',
]);

/** Why a message cannot be published to `exchange`, or undefined when it can. */
export function reservedExchangeProblem(exchange: string): string | undefined {
  // Not "can never exist": whoever writes it means the default exchange, and should hear why not.
  if (isDefaultExchange(exchange)) return defaultExchangeProblem(exchange);
  if (!exchange.startsWith('amq.') || PREDEFINED_EXCHANGES.has(exchange)) return undefined;
  return (
    `"${exchange}" is reserved: RabbitMQ refuses to declare amq.* exchanges, so it can never ` +
    `exist; of those, only ${[...PREDEFINED_EXCHANGES].join(', ')} are there to publish to`
  );
}
