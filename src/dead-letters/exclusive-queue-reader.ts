import { setTimeout } from 'node:timers';
import type { Channel, ChannelModel, Message } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { DeadLetterQueueBusyError } from './dead-letter-queue-busy-error.js';

/** How often a reader that found the queue held by another asks again. */
const RETRY_MS = 50;

/**
 * Reads a queue's messages, unacked and in queue order, while no other outboxkit reader can.
 *
 * A message one reader holds unacked is invisible to every other, so two readers at once would
 * each see part of the queue: a partial list, a false "not found", a replay or purge that misses
 * some. The broker's only lock that needs no more than read permission and ends with its holder
 * (a crashed process included) is an exclusive consumer: while one exists, another exclusive
 * consume is refused (403 "in exclusive use"). So a reader consumes the queue exclusively for
 * as long as it reads, with a prefetch of 1, and takes the other messages with basic.get on the
 * same channel.
 *
 * The consumer takes the head of the queue whenever its one slot is free: when it starts, and
 * when the message it holds is acked. What it takes then is ahead of anything a later get takes,
 * but its delivery may reach us after that get's answer (the channel answers a get before it
 * passes on a delivery waiting behind it, and numbers them in that order too, so delivery tags
 * do not tell). So after a get made while the slot was free, a round trip on the channel (a
 * basic.qos, which the channel answers itself, behind what it has to pass on) brings in any such
 * delivery, which is then put before the get's message.
 *
 * `close()` hands every message back and ends the lock at once: the next reader sees them all,
 * in their places (a classic queue puts a requeued message back where it was).
 */
export class ExclusiveQueueReader {
  readonly #channel: Channel;
  readonly #queue: string;
  /** Messages taken, in queue order, not yet returned by `next()`. */
  readonly #ahead: Message[] = [];
  /** A message the consumer was handed and that is not in `#ahead` yet. */
  #delivered: Message | undefined;
  /** The consumer may be handed a message: it holds none, or its message was acked. */
  #slotFree = true;
  /** How many messages this reader looks at: those in the queue at its first get. */
  #end: number | undefined;
  #returned = 0;

  private constructor(channel: Channel, queue: string) {
    this.#channel = channel;
    this.#queue = queue;
  }

  /**
   * Takes the queue's lock, asking again until `deadline`; past it, throws a
   * `DeadLetterQueueBusyError` (nothing was taken).
   */
  static async open(
    model: ChannelModel,
    queue: string,
    startedAt: number,
    deadline: number,
  ): Promise<ExclusiveQueueReader> {
    for (;;) {
      const channel = await model.createChannel();
      channel.on('error', () => {});
      const reader = new ExclusiveQueueReader(channel, queue);
      try {
        await channel.prefetch(1);
        await channel.consume(queue, (message) => reader.#took(message), {
          exclusive: true,
          noAck: false,
        });
        return reader;
      } catch (error) {
        await closeChannel(channel);
        if (!inExclusiveUse(error)) throw error;
        const left = deadline - monotonicMs();
        if (left <= 0) throw new DeadLetterQueueBusyError(queue, monotonicMs() - startedAt, error);
        // The broker tells no one when a consumer goes, so asking again is all there is.
        await new Promise((resolve) => setTimeout(resolve, Math.min(RETRY_MS, left)));
      }
    }
  }

  /**
   * The next message in queue order, or `false` once every message that was in the queue at
   * the first read has been returned (later arrivals are left for the next reader).
   */
  async next(): Promise<Message | false> {
    if (this.#end !== undefined && this.#returned >= this.#end) return false;
    if (this.#ahead.length === 0) {
      const got = await this.#channel.get(this.#queue, { noAck: false });
      if (this.#slotFree) {
        await this.#channel.prefetch(1);
        if (this.#delivered !== undefined) {
          this.#ahead.push(this.#delivered);
          this.#delivered = undefined;
          this.#slotFree = false;
        }
      }
      if (got !== false) this.#ahead.push(got);
      // The get's count is of the messages still waiting behind what was taken.
      this.#end ??= this.#ahead.length + (got === false ? 0 : got.fields.messageCount);
    }
    const message = this.#ahead.shift();
    if (message === undefined) return false;
    this.#returned += 1;
    return message;
  }

  /** Removes a message that `next()` returned. */
  ack(message: Message): void {
    this.#channel.ack(message);
    if (isDelivery(message)) this.#slotFree = true;
  }

  /** Hands back, in place, every message not acked, then lets the next reader in. */
  async close(): Promise<void> {
    // Closing the channel does both in one step: the queue removes the consumer and requeues
    // what the channel held together, so no other reader gets the lock before every message is
    // back. (Nacking first would have the still-live consumer handed a message again.) Should
    // the close not be answered, the connection's end, or the broker's, does the same.
    await closeChannel(this.#channel);
  }

  #took(message: Message | null): void {
    // null: the broker cancelled the consumer (the queue was deleted); the next get says so.
    if (message !== null) this.#delivered = message;
  }
}

/** Handed to the consumer, rather than answered to a get. */
function isDelivery(message: Message): boolean {
  return 'consumerTag' in message.fields;
}

/** The broker refused an exclusive consume because the queue has a consumer already. */
function inExclusiveUse(error: unknown): boolean {
  const { code, message } = error as { code?: unknown; message?: unknown };
  return code === 403 && typeof message === 'string' && message.includes('in exclusive use');
}
