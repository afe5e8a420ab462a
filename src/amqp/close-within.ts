import type { ChannelModel } from 'amqplib';
import { settleWithin } from '../util/with-timeout.js';

/** How long a close handshake may take before it is given up (a channel) or cut (a connection). */
export const CLOSE_TIMEOUT_MS = 2000;

/**
 * Closes a channel, waiting at most `CLOSE_TIMEOUT_MS`; never rejects. The broker answers a
 * channel's close only after its queues answered: a quorum queue without a leader, or a hung
 * broker, would hold it forever. The connection's close then ends the channel anyway.
 */
export async function closeChannel(channel: { close(): Promise<void> } | undefined): Promise<void> {
  if (channel) await settleWithin(channel.close(), CLOSE_TIMEOUT_MS);
}

/**
 * Closes a connection politely if the broker answers, and destroys its socket if it does not:
 * on a hung or half-open link the close handshake never completes. Never rejects.
 */
export async function closeConnection(model: ChannelModel | undefined): Promise<void> {
  if (!model) return;
  const closed = await settleWithin(
    model.close().then(() => true),
    CLOSE_TIMEOUT_MS,
  );
  if (closed === undefined) {
    // amqplib learns of a socket's end from its 'error' or 'end' event, not from 'close': a
    // socket destroyed without an error would leave the connection open until its heartbeat
    // timed out. The error it then emits is expected here.
    model.on('error', () => {});
    const stream = (model.connection as unknown as { stream?: { destroy(error?: Error): void } })
      .stream;
    stream?.destroy(new Error(`no answer to connection.close within ${CLOSE_TIMEOUT_MS} ms`));
  }
}
