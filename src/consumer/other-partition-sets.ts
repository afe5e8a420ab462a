import type { ChannelModel } from 'amqplib';
import { exchangeExistsOn } from '../amqp/exchange-exists.js';
import { queueInfoOn } from '../amqp/queue-info.js';
import { PartitionCountChangedError } from './partition-count-changed-error.js';
import { MAX_PARTITIONS, partitionExchangeName } from './partition-set.js';
import { UnpartitionedQueueError } from './unpartitioned-queue-error.js';

/**
 * Passive checks in flight at once, each on a channel of its own (a 404 closes it). The broker
 * spends about 1.5 ms on each channel: 255 checks take 0.4 s, 64 at a time.
 */
const CHECKS_AT_ONCE = 64;

/**
 * Hosts that consume an old partition set on purpose (`resizePartitions` drains it while the
 * new set exists), and so skip the check below.
 */
export const drainingHosts = new WeakSet<object>();

/** A partitioned consumer, as the check below needs it. */
export interface PartitionedConsumer {
  readonly name: string;
  readonly queue: string;
  readonly partitions: number;
}

/**
 * Rejects with a `PartitionCountChangedError` when RabbitMQ holds a partition set of one of the
 * consumers' queues of another count than its `partitions`: the count changed without a resize,
 * a resize is running or stopped half way, or a process of the previous deploy starts after
 * one. A set's exchange carries its count in its name (`<queue>.partitions-<n>`), and AMQP
 * cannot list exchanges, so each other count is checked passively: the consumers' checks in one
 * pass, so a host of several partitioned consumers pays the round trips once.
 */
export async function refuseOtherPartitionSets(
  model: ChannelModel,
  consumers: readonly PartitionedConsumer[],
): Promise<void> {
  const checks = consumers.flatMap((consumer) =>
    Array.from({ length: MAX_PARTITIONS }, (_, i) => i + 1)
      .filter((n) => n !== consumer.partitions)
      .map((n) => ({ consumer, n })),
  );
  // At most half of the connection's channels: a URL's small `channelMax` must not fail them.
  // amqplib sets it once tuned (0 becomes 65535); its types leave it out.
  const channelMax = (model.connection as { channelMax?: number }).channelMax ?? 0xffff;
  const atOnce = Math.max(1, Math.min(CHECKS_AT_ONCE, Math.floor(channelMax / 2)));
  const found: typeof checks = [];
  for (let i = 0; i < checks.length; i += atOnce) {
    const batch = checks.slice(i, i + atOnce);
    const exists = await Promise.all(
      batch.map(({ consumer, n }) =>
        exchangeExistsOn(model, partitionExchangeName(consumer.queue, n)),
      ),
    );
    found.push(...batch.filter((_, j) => exists[j]));
  }
  // The consumer's own queue, as it was before `partitions` was added: a partitioned consumer
  // never declares a queue of that name.
  for (const consumer of consumers) {
    const plain = await queueInfoOn(model, consumer.queue);
    if (plain) {
      throw new UnpartitionedQueueError(
        consumer.name,
        consumer.queue,
        plain.messageCount,
        consumer.partitions,
      );
    }
  }
  const first = found[0]?.consumer;
  if (first !== undefined) {
    const existing = found.filter((f) => f.consumer === first).map((f) => f.n);
    throw new PartitionCountChangedError(first.name, first.queue, first.partitions, existing);
  }
}
