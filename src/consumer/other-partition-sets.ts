import type { ChannelModel } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
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
 * Rejects with a `PartitionCountChangedError` when the consumer's own partition set does not
 * exist yet and RabbitMQ holds one of another count: `partitions` changed without a resize, or
 * a process of the previous deploy starts after one. A set's exchange carries its count in its
 * name (`<queue>.partitions-<n>`), and AMQP cannot list exchanges, so each other count is
 * checked passively; only when the own set is new (a first start, or a changed count), so a
 * restart costs one check.
 */
export async function refuseOtherPartitionSets(
  model: ChannelModel,
  consumer: string,
  queue: string,
  partitions: number,
): Promise<void> {
  if (await exchangeExists(model, queue, partitions)) return;
  const counts = Array.from({ length: MAX_PARTITIONS }, (_, i) => i + 1).filter(
    (n) => n !== partitions,
  );
  // Half of what the connection may still open: a URL's small `channelMax` must not fail them.
  const channelMax = (model.connection as { channelMax?: number }).channelMax ?? CHECKS_AT_ONCE;
  const atOnce = Math.max(1, Math.min(CHECKS_AT_ONCE, Math.floor(channelMax / 2)));
  const existing: number[] = [];
  for (let i = 0; i < counts.length; i += atOnce) {
    const batch = counts.slice(i, i + atOnce);
    const found = await Promise.all(batch.map((n) => exchangeExists(model, queue, n)));
    existing.push(...batch.filter((_, j) => found[j]));
  }
  if (existing.length > 0) {
    throw new PartitionCountChangedError(consumer, queue, partitions, existing);
  }
}

async function exchangeExists(model: ChannelModel, queue: string, count: number) {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    await channel.checkExchange(partitionExchangeName(queue, count));
    return true;
  } catch (error) {
    // NOT_FOUND is the answer; anything else (a lost connection) is a failure to report.
    if ((error as { code?: unknown }).code === 404) return false;
    throw error;
  } finally {
    await closeChannel(channel);
  }
}
