import { connect } from 'amqplib';
import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { topologyOf } from '../../src/consumer/consumer-topology.js';
import { deleteConsumerQueues } from '../../src/testing/delete-consumer-queues.js';
import { AMQP_URL } from './env.js';

/** What names a consumer's topology: its settings without the handler. */
export type TopologyOf = Omit<ConsumerDefinition, 'handler'>;

/**
 * Deletes every queue the consumers declared (`deleteConsumerQueues`) and, unlike it, their
 * exchanges too: a test's exchanges are its own. For tests whose consumers run in another
 * process or outside a fixture that tracks them.
 */
export async function deleteConsumerTopology(definitions: readonly TopologyOf[]): Promise<void> {
  if (definitions.length === 0) return;
  const topologies = definitions.map((d) => topologyOf({ ...d, handler: async () => {} }));
  await deleteConsumerQueues(AMQP_URL, topologies);
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    for (const t of topologies) await channel.deleteExchange(t.exchange);
    await channel.close();
  } finally {
    await connection.close();
  }
}
