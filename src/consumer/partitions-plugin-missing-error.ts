import { OutboxkitError } from '../errors/outboxkit-error.js';
import { CONSISTENT_HASH_EXCHANGE_TYPE, CONSISTENT_HASH_PLUGIN } from './partition-set.js';

/**
 * A consumer has `partitions`, but the broker does not know the `x-consistent-hash` exchange
 * type: the plugin that routes each ordering key to its partition is not enabled. Enabling it
 * is online and touches nothing else.
 */
export class PartitionsPluginMissingError extends OutboxkitError {
  /** The partition exchange that could not be declared: `<queue>.partitions-<count>`. */
  readonly exchange: string;

  constructor(exchange: string, cause: unknown) {
    super(
      'partitions-plugin-missing',
      `RabbitMQ refused to declare exchange "${exchange}" of type ${CONSISTENT_HASH_EXCHANGE_TYPE}, ` +
        `which a consumer's partitions route through: the type is unknown, its plugin is not ` +
        `enabled. Enable it on every node with \`rabbitmq-plugins enable ${CONSISTENT_HASH_PLUGIN}\` ` +
        '(online, no restart), or remove the `partitions` option.',
      { cause },
    );
    this.exchange = exchange;
  }
}

/** Whether a broker error says it does not know the consistent-hash exchange type. */
export function isUnknownConsistentHashType(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return /unknown exchange type/i.test(message) && message.includes(CONSISTENT_HASH_EXCHANGE_TYPE);
}
