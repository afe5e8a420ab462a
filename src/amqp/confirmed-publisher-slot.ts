import type { ChannelModel } from 'amqplib';
import { closeChannel } from './close-within.js';
import { ConfirmedPublisher } from './confirmed-publisher.js';

/** The publisher being opened or open, and the publisher itself once the opening resolved. */
interface Held {
  readonly opening: Promise<ConfirmedPublisher>;
  publisher?: ConfirmedPublisher;
}

/**
 * Holds at most one `ConfirmedPublisher`, opened on first use and forgotten once its channel
 * closes (a publish to a missing queue or exchange, a lost connection) or fails to open, so the
 * next publish gets a new one. A channel the broker only nacks any more (`wornOut`: a quorum
 * queue's old leader, see `NACKS_BEFORE_NEW_CHANNEL`) is replaced the same way, and retired: the
 * publishes still in flight on it get their answers, and the last one closes it.
 */
export class ConfirmedPublisherSlot {
  #current: Held | undefined;

  /** The publisher, opened on `model` when there is none or the one held is worn out. */
  open(model: ChannelModel): Promise<ConfirmedPublisher> {
    const current = this.#current;
    if (current?.publisher?.wornOut) {
      this.#current = undefined;
      current.publisher.retire();
    } else if (current) {
      return current.opening;
    }
    const held: Held = {
      opening: model.createConfirmChannel().then((channel) => {
        channel.on('error', () => {});
        channel.on('close', () => {
          if (this.#current === held) this.#current = undefined;
        });
        held.publisher = new ConfirmedPublisher(channel);
        return held.publisher;
      }),
    };
    held.opening.catch(() => {
      if (this.#current === held) this.#current = undefined;
    });
    this.#current = held;
    return held.opening;
  }

  /** Forgets the publisher without closing it: its connection is gone or no longer used. */
  forget(): void {
    this.#current = undefined;
  }

  /**
   * Forgets `publisher` if it is the one held, and closes it: after a timeout its channel is not
   * used again, so that late answers cannot count for the next publishes.
   */
  drop(publisher: ConfirmedPublisher): Promise<void> {
    if (this.#current?.publisher === publisher) this.#current = undefined;
    return publisher.close();
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await closeChannel(current?.opening);
  }
}
