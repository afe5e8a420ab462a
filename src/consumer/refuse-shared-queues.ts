import { ConfigurationError } from '../errors/configuration-error.js';
import { consumerTopologies, topologyQueueNames } from './consumer-topology.js';
import type { ResolvedConsumer } from './resolve-consumer.js';

/**
 * Refuses consumers of one host whose queues overlap: not only two consumers on one queue, but
 * a consumer whose queue is another's partition, retry or dead-letter queue (a consumer named
 * `billing.dlq` beside `billing`). RabbitMQ would refuse some of these only at start, as a
 * conflict of arguments, and take the others silently, the two consumers then sharing messages.
 */
export function refuseSharedQueues(consumers: readonly ResolvedConsumer[]): void {
  const owners = new Map<string, string>();
  for (const consumer of consumers) {
    for (const queue of topologyQueueNames(consumerTopologies(consumer)[0]!)) {
      const owner = owners.get(queue);
      if (owner !== undefined) {
        throw new ConfigurationError(
          `consumers[${consumer.name}].queue`,
          `queue "${queue}" is also a queue of consumer "${owner}"; each consumer needs queues of its own (a consumer's partition, retry and dead-letter queues are named after its queue)`,
        );
      }
      owners.set(queue, consumer.name);
    }
  }
}
