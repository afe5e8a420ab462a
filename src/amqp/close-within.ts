import type { ChannelModel } from 'amqplib';
import { settleWithin } from '../util/with-timeout.js';

/** How long a close handshake may take before it is given up (a channel) or cut (a connection). */
export const CLOSE_TIMEOUT_MS = 2000;

/** A channel, or one being opened (a failed opening counts as nothing to close). */
type Closable<T> = T | Promise<T | undefined> | undefined;

/** What `closeChannel` needs of an amqplib channel: `once` hears it end with its connection. */
interface ClosableChannel {
  close(): Promise<void>;
  once?(event: 'close', listener: () => void): unknown;
}

/**
 * Closes a channel, waiting at most `CLOSE_TIMEOUT_MS` (for its opening too); never rejects.
 * The broker answers a channel's close only after its queues answered: a quorum queue without a
 * leader, or a hung broker, would hold it forever. The connection's close then ends the channel.
 */
export async function closeChannel(channel: Closable<ClosableChannel>): Promise<void> {
  if (channel === undefined) return;
  await settleWithin(
    Promise.resolve(channel).then((c) => c && closed(c)),
    CLOSE_TIMEOUT_MS,
  );
}

/**
 * The close handshake's answer, or the channel's end with its connection: amqplib never settles
 * a close the connection's end overtook, which left the bound's timer holding the process.
 */
function closed(channel: ClosableChannel): Promise<void> {
  const ended = new Promise<void>((resolve) => channel.once?.('close', () => resolve()));
  return Promise.race([channel.close(), ended]);
}

/**
 * Closes a connection politely if the broker answers, and destroys its socket if it does not:
 * on a hung or half-open link the close handshake never completes. A connection still being
 * made is waited for as long, and closed whenever it comes after that. Never rejects.
 */
export async function closeConnection(model: Closable<ChannelModel>): Promise<void> {
  if (model instanceof Promise) {
    const connecting = model.catch(() => undefined);
    const made = await settleWithin(connecting, CLOSE_TIMEOUT_MS);
    if (made === undefined) {
      void connecting.then(closeConnection);
      return;
    }
    model = made;
  }
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
