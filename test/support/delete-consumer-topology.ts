import { connect } from 'amqplib';
import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { topologyOf, topologyQueueNames } from '../../src/consumer/consumer-topology.js';
import { AMQP_URL } from './env.js';

/** What names a consumer's topology: its settings without the handler. */
export type TopologyOf = Omit<ConsumerDefinition, 'handler'>;

/**
 * Deletes every queue the consumers declared (their delay, retry-due and dead-letter queues
 * too) and their exchanges, on a connection of its own; names already gone are skipped. For
 * tests whose consumers run in another process or outside a fixture that tracks them.
 */
export async function deleteConsumerTopology(definitions: readonly TopologyOf[]): Promise<void> {
  if (definitions.length === 0) return;
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    for (const definition of definitions) {
      const topology = topologyOf({ ...definition, handler: async () => {} });
      for (const queue of topologyQueueNames(topology)) await channel.deleteQueue(queue);
      await channel.deleteExchange(topology.exchange);
    }
    await channel.close();
  } finally {
    await connection.close();
  }
}
