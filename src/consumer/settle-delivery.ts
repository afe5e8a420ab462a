import { holdChannelWrites } from '../amqp/socket-cork.js';
import type { ConsumerStats } from './consumer-stats.js';
import type { ReceivedDelivery } from './received-delivery.js';

/**
 * Acks a delivery, strictly after its transaction committed (or its copy was confirmed). A
 * closed channel cannot ack: the broker redelivers, and the dedupe row absorbs the copy. The
 * acks of one turn of the event loop leave together (`holdChannelWrites`).
 */
export function ack(delivery: ReceivedDelivery): void {
  if (!delivery.handle.open) return;
  holdChannelWrites(delivery.handle.channel);
  try {
    delivery.handle.channel.ack(delivery.message);
  } catch {
    // The channel closed meanwhile: the broker redelivers, and the dedupe row absorbs it.
  }
}

/**
 * Nacks with requeue, in delivery order, so requeued messages keep their places. Each counts
 * as requeued, also on a closed channel, whose deliveries the broker requeues anyway.
 */
export function requeue(
  deliveries: readonly ReceivedDelivery[],
  stats: Pick<ConsumerStats, 'requeued'>,
): void {
  const sorted = [...deliveries].sort(
    (a, b) => a.message.fields.deliveryTag - b.message.fields.deliveryTag,
  );
  for (const delivery of sorted) {
    stats.requeued += 1;
    if (!delivery.handle.open) continue;
    holdChannelWrites(delivery.handle.channel);
    try {
      delivery.handle.channel.nack(delivery.message, false, true);
    } catch {
      // Closed meanwhile: requeued by the broker anyway.
    }
  }
}

/**
 * Hands back deliveries a stop leaves unhandled. An ordered consumer's stay unacked until its
 * channel closes, which the stop does last: the broker then requeues them ahead of their keys'
 * later messages on both queue types, while a quorum queue puts a nacked one behind them.
 */
export function handBackAtStop(
  deliveries: readonly ReceivedDelivery[],
  ordered: boolean,
  stats: Pick<ConsumerStats, 'requeued'>,
): void {
  if (!ordered) requeue(deliveries, stats);
}

/**
 * Hands one delivery back now, unhandled. An ordered consumer's goes back by the close of its
 * channel (`retire`), which requeues every unacked delivery of it in queue order: a nack would
 * let its key's later messages, already sent ahead, pass it (and a quorum queue puts it behind
 * them). The channel reopens as after any channel error.
 */
export function handBack(
  delivery: ReceivedDelivery,
  ordered: boolean,
  retire: (handle: ReceivedDelivery['handle']) => void,
  stats: Pick<ConsumerStats, 'requeued'>,
): void {
  if (ordered) retire(delivery.handle);
  else requeue([delivery], stats);
}
