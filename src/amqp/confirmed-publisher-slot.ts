import type { ChannelModel } from 'amqplib';
import { closeChannel } from './close-within.js';
import { ConfirmedPublisher } from './confirmed-publisher.js';

/**
 * Holds at most one `ConfirmedPublisher`, opened on first use and forgotten once its channel
 * closes (a publish to a missing queue or exchange, a lost connection) or fails to open, so the
 * next publish gets a new one. A channel the broker only nacks any more (`wornOut`: a quorum
 * queue's old leader, see `NACKS_BEFORE_NEW_CHANNEL`) is closed and replaced the same way.
 */
export class ConfirmedPublisherSlot {
  #current: Promise<ConfirmedPublisher> | undefined;
  /** What `#current` resolved to, once it has. */
  #held: ConfirmedPublisher | undefined;

  /** The publisher, opened on `model` when there is none or the one held is worn out. */
  open(model: ChannelModel): Promise<ConfirmedPublisher> {
    const held = this.#held;
    if (held?.wornOut && this.#current) this.drop(held);
    if (this.#current) return this.#current;
    const opening = model.createConfirmChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#current === opening) this.#current = undefined;
      });
      const publisher = new ConfirmedPublisher(channel);
      if (this.#current === opening) this.#held = publisher;
      return publisher;
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
    this.#held = undefined;
  }

  /**
   * Forgets `publisher` if it is the one held, and closes it: after a timeout its channel is not
   * used again, so that late answers cannot count for the next publishes.
   */
  drop(publisher: ConfirmedPublisher): void {
    if (this.#held === publisher) {
      this.#current = undefined;
      this.#held = undefined;
    }
    void publisher.close();
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    this.#held = undefined;
    await closeChannel(current);
  }
}
