import type { ChannelModel, Options } from 'amqplib';
import { describeConfirmResult } from '../amqp/confirmed-publisher.js';
import { ConfirmedPublisherSlot } from '../amqp/confirmed-publisher-slot.js';
import { fitErrorToFrame } from '../protocol/copy-headers.js';

/**
 * Publishes retry and dead-letter copies to a consumer's own queues (through the default
 * exchange) on a confirm channel, and resolves only once the broker has the copy: the original
 * is acked after that, so a copy that never arrived leaves the original in its queue.
 */
export class RetryPublisher {
  readonly #timeoutMs: number;
  #model: ChannelModel | undefined;
  readonly #publisher = new ConfirmedPublisherSlot();

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** Publishes on `model` from now on. */
  attach(model: ChannelModel): void {
    if (this.#model === model) return;
    this.#model = model;
    this.#publisher.forget();
  }

  detach(model: ChannelModel): void {
    if (this.#model !== model) return;
    this.#model = undefined;
    this.#publisher.forget();
  }

  /**
   * Puts a copy into `queue`; rejects when the broker did not take it within the timeout.
   * `whenMissing` runs, before the rejection, when the copy was returned because `queue` does
   * not exist (deleted under a running consumer): it declares the queue again.
   */
  async publish(
    queue: string,
    content: Buffer,
    options: Options.Publish,
    whenMissing: () => Promise<void> = async () => {},
  ): Promise<void> {
    const model = this.#model;
    if (!model) throw new Error('not connected to RabbitMQ');
    const publisher = await this.#publisher.open(model);
    const result = await publisher.publish(
      '',
      queue,
      content,
      fitErrorToFrame({ ...options, persistent: true }, publisher.maxContentHeaderBytes),
      this.#timeoutMs,
    );
    if (result.kind === 'confirmed') return;
    if (result.kind === 'timeout' || !publisher.isOpen) void this.#publisher.drop(publisher);
    if (result.kind === 'returned') await whenMissing();
    const detail =
      result.kind === 'returned'
        ? `queue "${queue}" does not exist; the copy was returned`
        : describeConfirmResult(result);
    throw new Error(`the copy for ${queue} was not taken: ${detail}`);
  }

  async close(): Promise<void> {
    this.#model = undefined;
    await this.#publisher.close();
  }
}
