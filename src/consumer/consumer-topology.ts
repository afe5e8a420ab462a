import type { Channel, ChannelModel } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { declareRefusal } from '../amqp/declare-refusal.js';
import { assertExchanges, type ExchangeDeclaration } from '../amqp/exchange-declaration.js';
import type { AnyConsumerDefinition } from './consumer-definition.js';
import {
  CONSISTENT_HASH_EXCHANGE_TYPE,
  MAX_PARTITIONS,
  PARTITION_BINDING_WEIGHT,
  type PartitionSet,
  partitionSet,
} from './partition-set.js';
import {
  isUnknownConsistentHashType,
  PartitionsPluginMissingError,
} from './partitions-plugin-missing-error.js';
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
  /**
   * One queue per distinct retry delay; messages wait out its TTL, then dead-letter to
   * `retryDueQueue`.
   */
  readonly delayQueues: readonly (QueueDeclaration & { readonly delayMs: number })[];
  /**
   * Where retries come back to when their delay is over, consumed beside `queue`; not for
   * ordered consumers, which retry in place.
   */
  readonly retryDueQueue?: QueueDeclaration | undefined;
  /**
   * A partitioned consumer's whole partition set, declared with any one partition (`queue` is
   * then that partition): `bindings` bind the set's exchange to `exchange`, not `queue`.
   */
  readonly partitions?: PartitionSet | undefined;
}

/** Where a consumer's failed messages end up: `<queue>.dlq`. */
export function deadLetterQueueName(queue: string): string {
  return `${queue}.dlq`;
}

/**
 * A dead-letter queue is a classic queue, whatever the consumer's queue type. AMQP 0-9-1 cannot
 * peek, so reading a dead letter takes it unacked and hands it back. A quorum queue counts each
 * hand-back as a delivery (`x-delivery-count`), and from RabbitMQ 4.0 drops a message past its
 * delivery limit (20 by default), so 20 reads would lose it. The opt-out, `x-delivery-limit: -1`,
 * is 4.x only: RabbitMQ 3.x takes -1 as a limit and drops the message at its first hand-back. A
 * classic queue counts nothing, has no delivery limit and keeps a requeued message in its place,
 * on 3.x and 4.x alike. What it gives up is replication: see docs/operations.md.
 */
export const DEAD_LETTER_QUEUE_ARGUMENTS: Readonly<Record<string, unknown>> = Object.freeze({
  'x-queue-type': 'classic',
});

/** The code of the process warning about a dead-letter queue declared by an older version. */
export const QUORUM_DEAD_LETTER_QUEUE_WARNING = 'OUTBOXKIT_QUORUM_DEAD_LETTER_QUEUE';

/**
 * Where a retry comes back to once its delay is over: `<queue>.retry.due`. A queue of the
 * consumer's own rather than its main queue, which a policy may give a length limit: a message
 * dead-lettered into a full queue with `reject-publish` is dropped by a classic delay queue, and
 * held by a quorum one (RabbitMQ 3.10 did not send it again until a restart).
 */
export function retryDueQueueName(queue: string): string {
  return `${queue}.retry.due`;
}

/** The queue a message waits in before retry: `<queue>.retry.<ms>ms`. */
export function delayQueueName(queue: string, delayMs: number): string {
  return `${queue}.retry.${delayMs}ms`;
}

/**
 * The broker objects of one consumer. Retries do not requeue: the failed message is published
 * to a delay queue whose TTL is the retry delay and whose dead-letter target is the consumer's
 * retry-due queue (through the default exchange), which the consumer consumes beside its own: a
 * retry reaches only the consumer that failed, not every queue bound to the original exchange.
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
  const due = retryDueQueueName(queue);
  const delayQueues = delays.map((delayMs) => {
    const args: Record<string, unknown> = {
      'x-queue-type': queueType,
      'x-message-ttl': delayMs,
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': due,
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
    deadLetterQueue: { name: dlq, arguments: DEAD_LETTER_QUEUE_ARGUMENTS },
    delayQueues,
    // Even without delay queues (`maxAttempts: 1`): those of an earlier setting may still hold
    // retries. Like the main queue: anything the broker drops from it goes to the dead letters.
    retryDueQueue: consumer.ordered ? undefined : { name: due, arguments: main },
  };
}

/**
 * The topology of each queue a consumer consumes: one, or one per partition. A partition queue
 * is an ordered consumer's queue (single active consumer, retries in place, dead letters to the
 * consumer's one `<queue>.dlq`); each carries the whole set, so that whichever partition attaches
 * first declares and binds all of them in order.
 */
export function consumerTopologies(consumer: ResolvedConsumer): ConsumerTopology[] {
  const topology = consumerTopology(consumer);
  if (consumer.partitions === undefined) return [topology];
  const partitions = partitionSet(consumer.queue, consumer.partitions);
  return partitions.queues.map((name) => ({
    ...topology,
    queue: { name, arguments: topology.queue.arguments },
    partitions,
  }));
}

/**
 * The broker objects a definition leads to, for tools and tests (moving dead letters, cleaning
 * up). Throws a `ConfigurationError` for a definition the host would reject.
 */
export function topologyOf(definition: AnyConsumerDefinition): ConsumerTopology {
  return consumerTopologies(
    resolveConsumer(definition, { brokerConsumerTimeoutMs: Number.MAX_SAFE_INTEGER }),
  )[0]!;
}

/** Every queue a consumer declares (all its partitions too), for tools and tests that clean up. */
export function topologyQueueNames(topology: ConsumerTopology): string[] {
  return [
    ...new Set([
      topology.queue.name,
      ...(topology.partitions?.queues ?? []),
      topology.deadLetterQueue.name,
      ...(topology.retryDueQueue ? [topology.retryDueQueue.name] : []),
      ...topology.delayQueues.map((q) => q.name),
    ]),
  ];
}

/**
 * Declares exchanges, queues and bindings. Declaring what exists with the same settings is a
 * no-op; a conflict (406 PRECONDITION_FAILED) becomes a `TopologyConflictError`, except for a
 * dead-letter queue that an older outboxkit declared as a quorum queue: it is kept, so that an
 * upgrade does not stop consumers, and a process warning (`OUTBOXKIT_QUORUM_DEAD_LETTER_QUEUE`)
 * names it and the upgrade step, since reading it wears its messages out. A dead-letter queue
 * whose cluster node is down is passed over and reported to `onDeadLetterQueueDown`.
 */
export async function declareTopology(
  model: ChannelModel,
  topologies: readonly ConsumerTopology[],
  options: { onDeadLetterQueueDown?: (queue: string, error: unknown) => void } = {},
): Promise<void> {
  // The dead-letter queues go first, each on a channel of its own: a 406 or 404 closes its channel.
  for (const t of topologies) {
    await declareDeadLetterQueue(model, t.deadLetterQueue, options.onDeadLetterQueueDown);
  }
  const open = async () => {
    const opened = await model.createChannel();
    opened.on('error', () => {});
    return opened;
  };
  let channel = await open();
  try {
    const exchanges = new Map(topologies.map((t) => [t.exchange, t.exchangeType]));
    channel = await assertExchanges(
      channel,
      [...exchanges].map(([name, type]) => ({ name, type: type as ExchangeDeclaration['type'] })),
      open,
    );
    for (const t of topologies) {
      if (t.partitions) {
        await declarePartitions(model, channel, t, t.partitions);
        continue;
      }
      // The consumer's own queue first: a changed setting (its queueType) is then reported
      // on the queue the definition names, not on a delay queue derived from it. The due queue
      // before the delay queues, so that no retry is dead-lettered to a queue not there yet.
      for (const q of [t.queue, ...(t.retryDueQueue ? [t.retryDueQueue] : [])]) {
        await asTopologyConflict('queue', q.name, () =>
          channel.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } }),
        );
      }
      for (const q of t.delayQueues) {
        channel = await declareDelayQueue(channel, q, t.queue.name, open);
      }
      for (const key of t.bindings) await channel.bindQueue(t.queue.name, t.exchange, key);
    }
  } finally {
    await closeChannel(channel);
  }
}

/** The code of the process warning about a delay queue declared by an older version. */
export const LEGACY_DELAY_QUEUE_WARNING = 'OUTBOXKIT_LEGACY_DELAY_QUEUE';

/**
 * Declares a delay queue. One that an older outboxkit declared, dead-lettering into the
 * consumer's own queue, is kept as it is (redeclaring it with other arguments is refused, and
 * deleting it would lose the retries waiting in it), with a process warning naming it and the
 * upgrade step. Returns the channel to go on with: a refused declare closes its channel.
 */
async function declareDelayQueue(
  channel: Channel,
  q: QueueDeclaration,
  consumerQueue: string,
  open: () => Promise<Channel>,
): Promise<Channel> {
  try {
    await asTopologyConflict('queue', q.name, () =>
      channel.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } }),
    );
    return channel;
  } catch (error) {
    if (!(error instanceof TopologyConflictError) || !isOtherDeadLetterTarget(error.cause)) {
      throw error;
    }
  }
  const reopened = await open();
  const legacy = { ...q.arguments, 'x-dead-letter-routing-key': consumerQueue };
  try {
    await asTopologyConflict('queue', q.name, () =>
      reopened.assertQueue(q.name, { durable: true, arguments: legacy }),
    );
  } catch (error) {
    await closeChannel(reopened);
    throw error;
  }
  warnOnce(
    q.name,
    `Delay queue "${q.name}" was declared by an older outboxkit and returns retries to ` +
      `"${consumerQueue}" itself, where a length limit with reject-publish would drop them. ` +
      'It is kept and still works as before. To move it to the new kind, stop the ' +
      "consumer's processes, wait until it is empty, delete it and start them again: see " +
      '"Upgrading delay queues" in docs/operations.md.',
    LEGACY_DELAY_QUEUE_WARNING,
  );
  return reopened;
}

/** Whether a 406 says the queue exists with another dead-letter routing key. */
function isOtherDeadLetterTarget(error: unknown): boolean {
  return isInequivalentArgument(error, 'x-dead-letter-routing-key');
}

/** Whether a 406 says the queue exists with another value of queue argument `name`. */
function isInequivalentArgument(error: unknown, name: string): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return (error as { code?: unknown }).code === 406 && message.includes(`'${name}'`);
}

/**
 * Whether a 404 says the queue exists but its node is down: a classic queue lives on one node
 * of a cluster, and while that node is down RabbitMQ refuses to declare it from any other.
 */
export function isQueueNodeDown(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error);
  return (error as { code?: unknown }).code === 404 && /home node .* is down/.test(message);
}

/**
 * Declares a partition set: the hash exchange, every partition queue bound to it in index order
 * (the order the plugin numbers its buckets in, also after a broker restart), and only then the
 * hash exchange bound to the consumer's exchange, so that no message is hashed over a partial set.
 * Declaring a set that exists is a no-op: bindings that exist are not added again.
 */
async function declarePartitions(
  model: ChannelModel,
  channel: Channel,
  t: ConsumerTopology,
  set: PartitionSet,
): Promise<void> {
  // An unknown exchange type is a connection error (503): the connection reports why, the
  // declare only that the channel ended.
  let connectionError: unknown;
  const onError = (error: unknown) => {
    connectionError = error;
  };
  // One such listener per partition declaring at once, each removed below: not a leak, though
  // past 10 Node would warn of one.
  if (model.getMaxListeners() < MAX_PARTITIONS + 10) model.setMaxListeners(MAX_PARTITIONS + 10);
  model.on('error', onError);
  try {
    await asTopologyConflict('exchange', set.exchange, () =>
      channel.assertExchange(set.exchange, CONSISTENT_HASH_EXCHANGE_TYPE, {
        durable: true,
        arguments: { ...set.exchangeArguments },
      }),
    );
  } catch (error) {
    const cause = connectionError ?? error;
    if (isUnknownConsistentHashType(cause)) {
      throw new PartitionsPluginMissingError(set.exchange, cause);
    }
    throw error;
  } finally {
    model.off('error', onError);
  }
  for (const queue of set.queues) {
    await asTopologyConflict('queue', queue, () =>
      channel.assertQueue(queue, { durable: true, arguments: { ...t.queue.arguments } }),
    );
    await channel.bindQueue(queue, set.exchange, PARTITION_BINDING_WEIGHT);
  }
  for (const key of t.bindings) await channel.bindExchange(set.exchange, t.exchange, key);
}

/** Whether a 406 says the queue exists with another queue type (quorum, stream). */
export function isOtherQueueType(error: unknown): boolean {
  return isInequivalentArgument(error, 'x-queue-type');
}

const warnedQueues = new Set<string>();

/**
 * A process warning about a queue kept from an older version, once per queue and process:
 * consumers declare again on every reconnect.
 */
function warnOnce(queue: string, message: string, code: string): void {
  if (warnedQueues.has(queue)) return;
  warnedQueues.add(queue);
  process.emitWarning(message, { code });
}

/**
 * Declares a dead-letter queue. One whose node is down (a cluster's node holding this classic
 * queue) is passed over with `onNodeDown`, so that the consumer still consumes its replicated
 * queue through the other nodes: a dead letter meanwhile is returned unroutable by the broker
 * (mandatory publish), and the consumer leaves the message in its own queue and retries it.
 */
async function declareDeadLetterQueue(
  model: ChannelModel,
  q: QueueDeclaration,
  onNodeDown: ((queue: string, error: unknown) => void) | undefined,
): Promise<void> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    await channel.assertQueue(q.name, { durable: true, arguments: { ...q.arguments } });
  } catch (error) {
    if (isQueueNodeDown(error)) {
      onNodeDown?.(q.name, error);
      return;
    }
    if (!isOtherQueueType(error)) throw declareRefusal('queue', q.name, error) ?? error;
    warnOnce(
      q.name,
      `Dead-letter queue "${q.name}" is not a classic queue (an outboxkit before 0.x declared it ` +
        'like its consumer queue). It is kept and still receives dead letters, but reading it ' +
        '(dead-letters list/show, the dashboard) is refused: each read would count as a ' +
        'delivery, and RabbitMQ 4 drops a quorum-queue message after 20. Move its messages ' +
        'out, delete it and restart the consumer: see "Upgrading a dead-letter queue" in ' +
        'docs/operations.md.',
      QUORUM_DEAD_LETTER_QUEUE_WARNING,
    );
  } finally {
    await closeChannel(channel);
  }
}

async function asTopologyConflict<T>(
  kind: 'queue' | 'exchange',
  name: string,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw declareRefusal(kind, name, error) ?? error;
  }
}
