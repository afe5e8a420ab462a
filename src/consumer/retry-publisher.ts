import type { ChannelModel, Options } from 'amqplib';
import type { AmqpConnection } from '../amqp/amqp-connection.js';
import { describeConfirmResult } from '../amqp/confirmed-publisher.js';
import { ConfirmedPublisherSlot } from '../amqp/confirmed-publisher-slot.js';
import { encodableCopy } from '../protocol/encodable-copy.js';

/** The copies' own connection: an `AmqpConnection`, started at the first copy. */
export type CopyConnection = Pick<AmqpConnection, 'start' | 'ready' | 'close'>;

/**
 * Publishes retry and dead-letter copies to a consumer's own queues (through the default
 * exchange) on a confirm channel, and resolves only once the broker has the copy: the original
 * is acked after that, so a copy that never arrived leaves the original in its queue.
 *
 * It publishes on a connection of its own, opened at the first copy. A broker alarm blocks a
 * connection that publishes, reads from it included: on the consuming connection, one copy
 * would hold every ack and delivery of the host until the alarm ends.
 */
export class RetryPublisher {
  readonly #timeoutMs: number;
  readonly #connection: CopyConnection;
  /** The connection the slot's publisher was opened on. */
  #model: ChannelModel | undefined;
  readonly #publisher = new ConfirmedPublisherSlot();

  constructor(timeoutMs: number, connection: CopyConnection) {
    this.#timeoutMs = timeoutMs;
    this.#connection = connection;
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
    this.#connection.start();
    const model = await this.#connection.ready(AbortSignal.timeout(this.#timeoutMs));
    if (!model) {
      throw new Error(`not connected to RabbitMQ, or blocked, for ${this.#timeoutMs} ms`);
    }
    if (model !== this.#model) {
      this.#model = model;
      this.#publisher.forget();
    }
    const publisher = await this.#publisher.open(model);
    const result = await publisher.publish(
      '',
      queue,
      content,
      encodableCopy({ ...options, persistent: true }, publisher),
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
    await this.#connection.close();
  }
}
