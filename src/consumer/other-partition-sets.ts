import type { ChannelModel } from 'amqplib';
import { exchangeExistsOn } from '../amqp/exchange-exists.js';
import { PartitionCountChangedError } from './partition-count-changed-error.js';
import { MAX_PARTITIONS, partitionExchangeName } from './partition-set.js';

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

/**
 * Rejects with a `PartitionCountChangedError` when RabbitMQ holds a partition set of the
 * consumer's queue of another count than `partitions`: the count changed without a resize, a
 * resize is running or stopped half way, or a process of the previous deploy starts after one.
 * A set's exchange carries its count in its name (`<queue>.partitions-<n>`), and AMQP cannot
 * list exchanges, so each other count is checked passively.
 */
export async function refuseOtherPartitionSets(
  model: ChannelModel,
  consumer: string,
  queue: string,
  partitions: number,
): Promise<void> {
  const counts = Array.from({ length: MAX_PARTITIONS }, (_, i) => i + 1).filter(
    (n) => n !== partitions,
  );
  // At most half of the connection's channels: a URL's small `channelMax` must not fail them.
  // amqplib sets it once tuned (0 becomes 65535); its types leave it out.
  const channelMax = (model.connection as { channelMax?: number }).channelMax ?? 0xffff;
  const atOnce = Math.max(1, Math.min(CHECKS_AT_ONCE, Math.floor(channelMax / 2)));
  const existing: number[] = [];
  for (let i = 0; i < counts.length; i += atOnce) {
    const batch = counts.slice(i, i + atOnce);
    const found = await Promise.all(
      batch.map((n) => exchangeExistsOn(model, partitionExchangeName(queue, n))),
    );
    existing.push(...batch.filter((_, j) => found[j]));
  }
  if (existing.length > 0) {
    throw new PartitionCountChangedError(consumer, queue, partitions, existing);
  }
}
