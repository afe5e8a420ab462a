import { ORDERING_KEY_HEADER } from '../protocol/message-headers.js';

/** The RabbitMQ plugin that provides the exchange type partitions route through. */
export const CONSISTENT_HASH_PLUGIN = 'rabbitmq_consistent_hash_exchange';

/** The exchange type of that plugin. */
export const CONSISTENT_HASH_EXCHANGE_TYPE = 'x-consistent-hash';

/** The most partitions a consumer may have; each is a queue and an AMQP consumer per process. */
export const MAX_PARTITIONS = 256;

/**
 * The broker objects that split an ordered consumer into partitions: a consistent-hash exchange
 * hashing the ordering-key header, bound to the consumer's exchange, and one queue per partition
 * bound to it with equal weight. The names carry the partition count, so a set of another size
 * is a set of its own (see "Changing the number of partitions" in docs/consumer.md).
 */
export interface PartitionSet {
  /** `<queue>.partitions-<count>`, of type `x-consistent-hash`. */
  readonly exchange: string;
  readonly exchangeArguments: Readonly<Record<string, unknown>>;
  /**
   * `<queue>.partition-<i>-of-<count>`, `i` zero-padded so that name order is index order. They
   * are bound in this order: the plugin numbers its buckets in binding order, and renumbers them
   * after a broker restart in binding-key-then-queue-name order, which is the same order, so a key
   * stays in its partition across restarts.
   */
  readonly queues: readonly string[];
  /** `<queue>.processes`, whatever the count (see `partitionRosterQueueName`). */
  readonly roster: string;
}

export function partitionExchangeName(queue: string, count: number): string {
  return `${queue}.partitions-${count}`;
}

/**
 * The queue every process running a partitioned consumer subscribes to, so that its consumers
 * count the processes: `<queue>.processes`. Nothing is published to it.
 */
export function partitionRosterQueueName(queue: string): string {
  return `${queue}.processes`;
}

export function partitionQueueName(queue: string, index: number, count: number): string {
  const width = String(count - 1).length;
  return `${queue}.partition-${String(index).padStart(width, '0')}-of-${count}`;
}

/**
 * The partition count of `partitionQueue` when it is one of `queue`'s partitions
 * (`<queue>.partition-<i>-of-<count>`), else undefined.
 */
export function partitionCountOf(queue: string, partitionQueue: string): number | undefined {
  const prefix = `${queue}.partition-`;
  if (!partitionQueue.startsWith(prefix)) return undefined;
  const match = /^\d+-of-(\d+)$/.exec(partitionQueue.slice(prefix.length));
  return match ? Number(match[1]) : undefined;
}

export function partitionSet(queue: string, count: number): PartitionSet {
  return Object.freeze({
    exchange: partitionExchangeName(queue, count),
    // Every message of one ordering key hashes to one partition. A message without the header
    // hashes as "no value": all keyless messages share one partition, where they run
    // concurrently as in any ordered consumer (they promise no order).
    exchangeArguments: Object.freeze({ 'hash-header': ORDERING_KEY_HEADER }),
    queues: Object.freeze(
      Array.from({ length: count }, (_, i) => partitionQueueName(queue, i, count)),
    ),
    roster: partitionRosterQueueName(queue),
  });
}

/** Each partition queue appears once on the hash ring's scale: equal shares. */
export const PARTITION_BINDING_WEIGHT = '1';
