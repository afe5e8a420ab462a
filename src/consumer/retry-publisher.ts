import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';

/**
 * Publishes retry and dead-letter copies to a consumer's own queues (through the default
 * exchange) on a confirm channel, and resolves only once the broker has the copy: the original
 * is acked after that, so a copy that never arrived leaves the original in its queue.
 */
export class RetryPublisher {
  readonly #timeoutMs: number;
  #model: ChannelModel | undefined;
  #channel: Promise<ConfirmChannel> | undefined;
  /** Copies the broker returned as unroutable (their queue is gone), by queue and message id. */
  readonly #returned = new Set<string>();

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** Publishes on `model` from now on. */
  attach(model: ChannelModel): void {
    if (this.#model === model) return;
    this.#model = model;
    this.#channel = undefined;
  }

  detach(model: ChannelModel): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    this.#channel = undefined;
  }

  /** Puts a copy into `queue`; rejects when the broker did not take it within the timeout. */
  async publish(queue: string, content: Buffer, options: Options.Publish): Promise<void> {
    const channel = await this.#open();
    const key = returnKey(queue, options.messageId);
    this.#returned.delete(key);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no publisher confirm from RabbitMQ within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      try {
        channel.sendToQueue(
          queue,
          content,
          { ...options, persistent: true, mandatory: true },
          (error) => {
            clearTimeout(timer);
            if (error) {
              reject(
                error instanceof Error
                  ? error
                  : new Error(`RabbitMQ did not confirm: ${String(error)}`),
              );
            } else if (this.#returned.delete(key)) {
              reject(new Error(`queue "${queue}" does not exist; the copy was returned`));
            } else {
              resolve();
            }
          },
        );
      } catch (error) {
        // amqplib throws synchronously once the channel is closed.
        clearTimeout(timer);
        this.#channel = undefined;
        reject(error);
      }
    });
  }

  async close(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    this.#model = undefined;
    await closeChannel(channel);
  }

  #open(): Promise<ConfirmChannel> {
    const model = this.#model;
    if (!model) return Promise.reject(new Error('not connected to RabbitMQ'));
    if (this.#channel) return this.#channel;
    const opening = model.createConfirmChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#channel === opening) this.#channel = undefined;
      });
      channel.on('return', (message: Message) => {
        // basic.return comes before the (positive) confirm of the same message.
        this.#returned.add(returnKey(message.fields.routingKey, message.properties.messageId));
      });
      return channel;
    });
    opening.catch(() => {
      if (this.#channel === opening) this.#channel = undefined;
    });
    this.#channel = opening;
    return opening;
  }
}

function returnKey(queue: string, messageId: unknown): string {
  return `${queue}\u0000${typeof messageId === 'string' ? messageId : ''}`;
}
