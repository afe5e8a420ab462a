import type { ChannelModel } from 'amqplib';
import { closeChannel } from './close-within.js';
import { ConfirmedPublisher } from './confirmed-publisher.js';

/**
 * Holds at most one `ConfirmedPublisher`, opened on first use and forgotten once its channel
 * closes (a publish to a missing queue or exchange, a lost connection) or fails to open, so the
 * next publish gets a new one.
 */
export class ConfirmedPublisherSlot {
  #current: Promise<ConfirmedPublisher> | undefined;

  /** The publisher, opened on `model` when there is none. */
  open(model: ChannelModel): Promise<ConfirmedPublisher> {
    if (this.#current) return this.#current;
    const opening = model.createConfirmChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#current === opening) this.#current = undefined;
      });
      return new ConfirmedPublisher(channel);
    });
    opening.catch(() => {
      if (this.#current === opening) this.#current = undefined;
    });
    this.#current = opening;
    return opening;
  }

  /** Forgets the publisher without closing it: its connection is gone or no longer used. */
  forget(): void {
    this.#current = undefined;
  }

  /**
   * Forgets `publisher` if it is the one held, and closes it: after a timeout its channel is not
   * used again, so that late answers cannot count for the next publishes.
   */
  drop(publisher: ConfirmedPublisher): void {
    const current = this.#current;
    void current?.then((held) => {
      if (held === publisher && this.#current === current) this.#current = undefined;
    });
    void publisher.close();
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await closeChannel(current);
  }
}
