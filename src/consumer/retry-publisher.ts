import type { ChannelModel, Options } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { ConfirmedPublisher, describeConfirmResult } from '../amqp/confirmed-publisher.js';

/**
 * Publishes retry and dead-letter copies to a consumer's own queues (through the default
 * exchange) on a confirm channel, and resolves only once the broker has the copy: the original
 * is acked after that, so a copy that never arrived leaves the original in its queue.
 */
export class RetryPublisher {
  readonly #timeoutMs: number;
  #model: ChannelModel | undefined;
  #channel: Promise<ConfirmedPublisher> | undefined;

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
    const publisher = await this.#open();
    const result = await publisher.publish(
      '',
      queue,
      content,
      { ...options, persistent: true },
      this.#timeoutMs,
    );
    if (result.kind === 'confirmed') return;
    if (result.kind === 'timeout' || !publisher.isOpen) this.#drop(publisher);
    const detail =
      result.kind === 'returned'
        ? `queue "${queue}" does not exist; the copy was returned`
        : describeConfirmResult(result);
    throw new Error(`the copy for ${queue} was not taken: ${detail}`);
  }

  async close(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    this.#model = undefined;
    await closeChannel(channel);
  }

  /** Forgets a channel that timed out or closed, so the next copy goes on a new one. */
  #drop(publisher: ConfirmedPublisher): void {
    const current = this.#channel;
    void current?.then((p) => {
      if (p === publisher && this.#channel === current) this.#channel = undefined;
    });
    void publisher.close();
  }

  #open(): Promise<ConfirmedPublisher> {
    const model = this.#model;
    if (!model) return Promise.reject(new Error('not connected to RabbitMQ'));
    if (this.#channel) return this.#channel;
    const opening = model.createConfirmChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#channel === opening) this.#channel = undefined;
      });
      return new ConfirmedPublisher(channel);
    });
    opening.catch(() => {
      if (this.#channel === opening) this.#channel = undefined;
    });
    this.#channel = opening;
    return opening;
  }
}
