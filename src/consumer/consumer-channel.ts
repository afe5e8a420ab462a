import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { closeChannel } from '../amqp/close-within.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import { settleWithin } from '../util/with-timeout.js';
import { type ConsumerTopology, declareTopology } from './consumer-topology.js';
import type { ResolvedConsumer } from './resolve-consumer.js';

/** The longest wait for the broker to confirm a cancel when the host stops. */
const CANCEL_TIMEOUT_MS = 5000;

/** A consuming channel; its deliveries can only be acked on it, while it is open. */
export interface ConsumerChannelHandle {
  readonly channel: Channel;
  readonly model: ChannelModel;
  open: boolean;
  /** One per queue consumed: the consumer's queue, and its retry-due queue when it has one. */
  consumerTags: string[];
}

export interface ConsumerChannelOptions {
  readonly consumer: Pick<ResolvedConsumer, 'name' | 'prefetch'>;
  readonly topology: ConsumerTopology;
  readonly logger: OutboxLogger;
  readonly reconnectBackoff: BackoffPolicy;
  /** Aborts when the host stops: no reopening from then on. */
  readonly stopping: AbortSignal;
  /** A delivery arrived on `handle`. */
  onDelivery(handle: ConsumerChannelHandle, message: ConsumeMessage): void;
  /**
   * `handle` closed (already marked so): the broker requeues its unacked deliveries, so any
   * copy still waiting here must be dropped, or it would be handled twice.
   */
  onClosed(handle: ConsumerChannelHandle): void;
}

/**
 * The one consuming channel of a consumer on the host's current connection: declares the
 * topology, opens the channel with manual acks and a prefetch window, and opens it again after
 * the broker closed it while the connection lived. A dead connection is the host's to redo: it
 * calls `attach` again with the new one.
 */
export class ConsumerChannel {
  readonly #options: ConsumerChannelOptions;
  #model: ChannelModel | undefined;
  #handle: ConsumerChannelHandle | undefined;
  #attaching: Promise<void> | undefined;
  #reopenFailures = 0;

  constructor(options: ConsumerChannelOptions) {
    this.#options = options;
  }

  /**
   * Declares the topology and starts consuming on `model`, unless already doing so. `declared`:
   * the host has just declared this topology on `model` (a partition set, which every partition
   * carries whole: declaring it again per partition made N × (2N + 2) declares at start).
   */
  attach(model: ChannelModel, declared = false): Promise<void> {
    this.#model = model;
    // One attach at a time: the host (after a reconnect) and a channel reopen may both ask.
    const previous = this.#attaching ?? Promise.resolve();
    const attaching = previous.catch(() => {}).then(() => this.#attach(model, declared));
    this.#attaching = attaching;
    void attaching.then(
      () => this.#settleAttach(attaching),
      () => this.#settleAttach(attaching),
    );
    return attaching;
  }

  /**
   * Declares the topology again on the current connection: one of its queues that this channel
   * does not consume (a delay or dead-letter queue) was deleted while the consumer ran. A
   * consumed queue deleted is redeclared anyway: the broker cancels its consumer, and the
   * channel reopens.
   */
  async declareAgain(): Promise<void> {
    const model = this.#model;
    if (model) await this.#declare(model);
  }

  /** The connection is gone; its channel and deliveries with it. */
  detach(model: ChannelModel): void {
    if (this.#model === model) this.#model = undefined;
  }

  /** Asks the broker to send no more deliveries; gives up on an answer after a while. */
  async cancel(): Promise<void> {
    const handle = this.#handle;
    if (handle?.open && handle.consumerTags.length > 0) {
      const cancels = handle.consumerTags.map((tag) => handle.channel.cancel(tag));
      await settleWithin(Promise.all(cancels), CANCEL_TIMEOUT_MS);
    }
  }

  /**
   * Closes `handle` now, and marks it closed at once so that nothing of it runs meanwhile: every
   * unacked delivery of it comes back from the broker, in queue order. It is then reopened as
   * after any channel error.
   */
  retire(handle: ConsumerChannelHandle): void {
    if (!handle.open) return;
    handle.open = false;
    this.#options.onClosed(handle);
    void closeChannel(handle.channel);
  }

  /**
   * Gives up being this queue's active consumer (single active consumer): retires the channel,
   * so the broker requeues its unacked deliveries in order and activates the next process's
   * consumer; the channel then reopens here, last in line. Returns whether a channel was open.
   */
  handOver(): boolean {
    const handle = this.#handle;
    if (!handle?.open) return false;
    this.retire(handle);
    return true;
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#model = undefined;
    if (handle?.open) await closeChannel(handle.channel);
  }

  #settleAttach(attaching: Promise<void>): void {
    if (this.#attaching === attaching) this.#attaching = undefined;
  }

  async #attach(model: ChannelModel, declared: boolean): Promise<void> {
    // Superseded by a newer connection, or already consuming on this one.
    if (this.#model !== model) return;
    if (this.#handle?.open && this.#handle.model === model) return;
    const { consumer, topology, logger, stopping } = this.#options;
    if (!declared) await this.#declare(model);
    const channel = await model.createChannel();
    const handle: ConsumerChannelHandle = { channel, model, open: true, consumerTags: [] };
    this.#handle = handle;
    channel.on('error', (error: Error) =>
      logger.warn('consumer channel error', {
        consumer: consumer.name,
        error: errorMessage(error),
      }),
    );
    channel.on('close', () => this.#onClosed(handle));
    // Per consumer (not `global`): each queue consumed gets the window, and the dispatcher's
    // concurrency bounds the handlers whatever arrives.
    await channel.prefetch(consumer.prefetch);
    const queues = [topology.queue.name];
    if (topology.retryDueQueue) queues.push(topology.retryDueQueue.name);
    for (const queue of queues) {
      const { consumerTag } = await channel.consume(
        queue,
        (message) => this.#onMessage(handle, queue, message),
        { noAck: false },
      );
      handle.consumerTags.push(consumerTag);
    }
    this.#reopenFailures = 0;
    // The host began stopping while this attach was under way (a reconnect).
    if (stopping.aborted) await closeChannel(channel);
  }

  #declare(model: ChannelModel): Promise<void> {
    const { consumer, topology, logger } = this.#options;
    return declareTopology(model, [topology], {
      onDeadLetterQueueDown: (queue, error) =>
        logger.warn('dead-letter queue unavailable (its node is down); consuming without it', {
          consumer: consumer.name,
          queue,
          error: errorMessage(error),
        }),
    });
  }

  #onMessage(handle: ConsumerChannelHandle, queue: string, message: ConsumeMessage | null): void {
    if (message !== null) {
      this.#options.onDelivery(handle, message);
      return;
    }
    // The broker cancelled the consumer (its queue was deleted): start over on a new channel,
    // which declares the topology again.
    this.#options.logger.warn('RabbitMQ cancelled the consumer; declaring its queue again', {
      consumer: this.#options.consumer.name,
      queue,
    });
    void closeChannel(handle.channel);
  }

  #onClosed(handle: ConsumerChannelHandle): void {
    handle.open = false;
    this.#options.onClosed(handle);
    if (this.#handle === handle) this.#handle = undefined;
    const { stopping, reconnectBackoff, logger, consumer } = this.#options;
    if (stopping.aborted || this.#model !== handle.model) return;
    // The channel closed while the connection may be alive (a channel error, a consumer
    // timeout, the queue deleted): open it again. A dead connection is the host's to redo.
    this.#reopenFailures += 1;
    const delay = backoffDelay(reconnectBackoff, this.#reopenFailures);
    void abortableDelay(delay, stopping)
      .then(async () => {
        if (stopping.aborted || this.#model !== handle.model || this.#handle) return;
        await this.attach(handle.model);
        logger.info('consumer channel reopened', { consumer: consumer.name });
      })
      .catch((error: unknown) =>
        logger.warn('could not reopen the consumer channel', {
          consumer: consumer.name,
          error: errorMessage(error),
        }),
      );
  }
}
