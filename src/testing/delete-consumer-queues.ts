import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { type AmqpUrls, amqpUrlList } from '../amqp/amqp-urls.js';
import { closeChannel, closeConnection } from '../amqp/close-within.js';
import { connectAmqpFirst } from '../amqp/connect-amqp.js';
import { queueInfoOn } from '../amqp/queue-info.js';
import type { AnyConsumerDefinition } from '../consumer/consumer-definition.js';
import {
  type ConsumerTopology,
  topologyOf,
  topologyQueueNames,
} from '../consumer/consumer-topology.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { optionsObject } from '../options/options-object.js';
import type { TlsOptions } from '../options/tls-options.js';

/** The connection settings of `deleteConsumerQueues`, beside its URL. */
export interface DeleteConsumerQueuesOptions {
  /** TLS settings for `amqps://` URLs, as the consumer host's `amqpTls`. */
  readonly amqpTls?: TlsOptions | undefined;
}

/**
 * Deletes the broker objects of consumers, for a test's clean-up: each consumer's queue (or
 * partition queues, their exchange and roster), its retry-due and delay queues and its dead-letter
 * queue, with what they hold. Not the exchanges the consumers bind to: publishers share them.
 * Call it once the host is stopped (or the Nest application closed): a running host declares its
 * queues again. Takes consumer definitions, or the Nest module's `OutboxService.topologies`.
 * Returns the queues it deleted (a queue that is not there is passed over).
 *
 * @example
 * after(async () => {
 *   await host.stop();
 *   await deleteConsumerQueues(amqpUrl, [billing]);
 * });
 */
export async function deleteConsumerQueues(
  amqpUrl: AmqpUrls,
  consumers: readonly (AnyConsumerDefinition | ConsumerTopology)[],
  deleteOptions?: DeleteConsumerQueuesOptions,
): Promise<string[]> {
  const urls = amqpUrlList(amqpUrl);
  const options = optionsObject('options', deleteOptions, ['amqpTls'], 'deleteConsumerQueues');
  const tls = amqpTlsFor(urls, options.amqpTls);
  if (!Array.isArray(consumers)) {
    throw new ConfigurationError(
      'consumers',
      'must be a list of consumer definitions or of OutboxService.topologies',
    );
  }
  const topologies = consumers.map((c) => (isTopology(c) ? c : topologyOf(c)));
  const model = await connectAmqpFirst(urls, {
    connectionName: `outboxkit-testing-delete-${process.pid}`,
    tls,
  });
  const deleted: string[] = [];
  try {
    const channel = await model.createChannel();
    channel.on('error', () => {});
    try {
      const exchanges = new Set<string>();
      for (const t of topologies) {
        const queues = topologyQueueNames(t);
        if (t.partitions) {
          exchanges.add(t.partitions.exchange);
          queues.push(t.partitions.roster);
        }
        for (const queue of queues) {
          // RabbitMQ deletes a queue that is not there without a word: asked first, to report.
          if (deleted.includes(queue) || (await queueInfoOn(model, queue)) === undefined) continue;
          await channel.deleteQueue(queue);
          deleted.push(queue);
        }
      }
      for (const exchange of exchanges) await channel.deleteExchange(exchange);
    } finally {
      await closeChannel(channel);
    }
  } finally {
    await closeConnection(model);
  }
  return deleted;
}

function isTopology(value: AnyConsumerDefinition | ConsumerTopology): value is ConsumerTopology {
  return (
    typeof value === 'object' &&
    value !== null &&
    'deadLetterQueue' in value &&
    'delayQueues' in value
  );
}
