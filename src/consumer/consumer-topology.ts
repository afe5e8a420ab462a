import type { ChannelModel } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import type { ConsumerDefinition } from './consumer-definition.js';
import { type ResolvedConsumer, resolveConsumer } from './resolve-consumer.js';
import { TopologyConflictError } from './topology-conflict-error.js';

/** A queue to declare, with its arguments. */
export interface QueueDeclaration {
  readonly name: string;
  readonly arguments: Readonly<Record<string, unknown>>;
}

/** Everything one consumer needs on the broker. */
export interface ConsumerTopology {
  readonly exchange: string;
  readonly exchangeType: string;
  readonly queue: QueueDeclaration;
  readonly bindings: readonly string[];
  readonly deadLetterQueue: QueueDeclaration;
  /** One queue per distinct retry delay; messages wait out its TTL, then dead-letter back. */
  readonly delayQueues: readonly (QueueDeclaration & { readonly delayMs: number })[];
}

/** Where a consumer's failed messages end up: `<queue>.dlq`. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}.dlq`;
}

/** The queue a message waits in before retry: `<queue>.retry.<ms>ms`. */
export function delayQueueName(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}ms`;
}

/**
 * The broker objects of one consumer. Retries do not requeue: the failed message is published
 * to a delay queue whose TTL is the retry delay and whose dead-letter target is the consumer's
 * own queue (through the default exchange), so a retry reaches only the consumer that failed,
 * not every queue bound to the original exchange.
 */
export function consumerTopology(consumer: ResolvedConsumer): ConsumerTopology {
  const { queue, queueType } = consumer;
  const dlq = deadLetterQueueName(queue);
  const main: Record<string, unknown> = {
    'x-queue-type': queueType,
    // Anything the broker itself rejects or drops from the main queue lands beside our own
    // dead letters instead of vanishing.
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': dlq,
  };
  if (consumer.ordered) main['x-single-active-consumer'] = true;

  // Ordered consumers retry in place: a delay queue would let later messages of the key pass.
  const delays = consumer.ordered ? [] : [...new Set(consumer.retryDelaysMs)];
  const delayQueues = delays.map((delayMs) => {
    const args: Record<string, unknown> = {
      'x-queue-type': queueType,
      'x-message-ttl': delayMs,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': queue,
    };
    if (queueType === 'quorum') {
      // The original is acked once the copy is in the delay queue, so the move back must not
      // be lost: quorum queues can dead-letter at least once (which needs reject-publish).
      args['x-dead-letter-strategy'] = 'at-least-once';
      args['x-overflow'] = 'reject-publish';
    }
    return { name: delayQueueName(queue, delayMs), delayMs, arguments: args };
  });

  return {
    exchange: consumer.exchange,
    exchangeType: consumer.exchangeType,
    queue: { name: queue, arguments: main },
    bindings: consumer.routingKeys,
    deadLetterQueue: { name: dlq, arguments: { 'x-queue-type': queueType } },
    delayQueues,
  };
}

/**
 * The broker objects a definition leads to, for tools and tests (moving dead letters, cleaning
 * up). Throws a `ConfigurationError` for a definition the host would reject.
 */
export function topologyOf(definition: ConsumerDefinition): ConsumerTopology {
  return consumerTopology(
    resolveConsumer(definition, { brokerConsumerTimeoutMs: Number.MAX_SAFE_INTEGER }),
  );
}

/** Every queue a consumer declares, for tools and tests that clean up. */
export function topologyQueueNames(topology: ConsumerTopology): string[] {
  return [
    topology.queue.name,
    topology.deadLetterQueue.name,
    ...topology.delayQueues.map((q) => q.name),
  ];
}

/**
 * Declares exchanges, queues and bindings. Declaring what exists with the same settings is a
 * no-op; a conflict (406 PRECONDITION_FAILED) becomes a `TopologyConflictError`.
 */
export async function declareTopology(
  model: ChannelModel,
  topologies: readonly ConsumerTopology[],
): Promise<void> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  const attempt = async <T>(kind: 'queue' | 'exchange', name: string, run: () => Promise<T>) => {
    try {
      return await run();
    } catch (error) {
      if ((error as { code?: unknown }).code === 406)
        throw new TopologyConflictError(kind, name, error);
      throw error;
    }
  };
  try {
    const exchanges = new Map(topologies.map((t) => [t.exchange, t.exchangeType]));
    for (const [name, type] of exchanges) {
      await attempt('exchange', name, () => channel.assertExchange(name, type, { durable: true }));
    }
    for (const t of topologies) {
      for (const q of [t.deadLetterQueue, ...t.delayQueues, t.queue]) {
        await attempt('queue', q.name, () =>
          channel.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } }),
        );
      }
      for (const key of t.bindings) await channel.bindQueue(t.queue.name, t.exchange, key);
    }
  } finally {
    await closeChannel(channel);
  }
}
