import type { Channel, ChannelModel } from 'amqplib';
import { closeChannel } from './close-within.js';

/**
 * Whether an exchange exists, asked with a passive declare. Rejects when the broker cannot say.
 * A missing exchange (404) closes the channel it was asked on, so `channel` must be one the
 * caller can afford to lose: never the channel it publishes on.
 */
export async function exchangeExists(channel: Channel, name: string): Promise<boolean> {
  try {
    await channel.checkExchange(name);
    return true;
  } catch (error) {
    if ((error as { code?: unknown }).code === 404) return false;
    throw error;
  }
}

/** `exchangeExists` on a channel of its own, opened and closed for the one question. */
export async function exchangeExistsOn(model: ChannelModel, name: string): Promise<boolean> {
  const channel = await model.createChannel();
  channel.on('error', () => {});
  try {
    return await exchangeExists(channel, name);
  } finally {
    await closeChannel(channel);
  }
}
