import type { ChannelModel, Replies } from 'amqplib';
import { closeChannel } from './close-within.js';

/**
 * A queue's counts, asked with a passive declare on a channel of its own (a missing queue's 404
 * closes the channel it is asked on), or undefined when the queue does not exist. Rejects when
 * the broker cannot say.
 */
export async function queueInfoOn(
  model: ChannelModel,
  queue: string,
): Promise<Replies.AssertQueue | undefined> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    return await channel.checkQueue(queue);
  } catch (error) {
    if ((error as { code?: unknown }).code === 404) return undefined;
    throw error;
  } finally {
    await closeChannel(channel);
  }
}
