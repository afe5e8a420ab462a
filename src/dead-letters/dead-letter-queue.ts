import type { Channel, ChannelModel, ConfirmChannel, Message } from 'amqplib';
import * as amqp from 'amqplib';
import { closeChannel, closeConnection } from '../amqp/close-within.js';
import { deadLetterQueueName } from '../consumer/consumer-topology.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { errorMessage, redactUrl } from '../util/logger.js';
import { checkFilter, type DeadLetterFilter, matchesFilter } from './dead-letter-filter.js';
import { DeadLetterNotFoundError } from './dead-letter-not-found-error.js';
import {
  describeDeadLetter,
  type QueuedDeadLetter,
  type QueuedDeadLetterDetail,
  replayProperties,
} from './queued-dead-letter.js';
import { type ReplayTarget, replayHeaders } from './replay-headers.js';
import type { DeadLetterWorkResult, ProgressListener, ReplayFailure } from './replay-result.js';

export interface DeadLetterQueueOptions {
  /** RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`. */
  readonly amqpUrl: string;
  /** The consumer's queue (by default its name); its dead letters are in `<queue>.dlq`. */
  readonly queue: string;
  /** How long one replayed copy may wait for its publisher confirm. Default 30 s. */
  readonly publishTimeoutMs?: number;
}

/** Options of `list`. */
export interface QueueListOptions {
  /** At most this many, in queue order. Default 100. */
  readonly limit?: number;
}

/** Options of `replay`. */
export interface QueueReplayOptions {
  /** Back to the consumer's queue (default), or to the original exchange and routing key. */
  readonly to?: ReplayTarget;
  /** Called after each dead letter handled, with the counts so far. */
  readonly onProgress?: ProgressListener;
}

/** What a scan does with one dead letter. */
type Verdict = 'keep' | 'remove' | 'stop' | 'stop-remove';

/**
 * Reads, replays and purges the dead letters of one consumer. Reading never loses a message:
 * messages are taken unacked, and what is kept is handed back (nacked with requeue, in order)
 * at the end, or by the broker if the process dies. A replay publishes a copy with a publisher
 * confirm and acks the dead letter only after that, so a crash in between leaves a duplicate
 * (which the consumer dedupes by message id), never a loss.
 *
 * Each operation looks at the messages that were in the queue when it began, at most: a replay
 * that fails again and comes back to the queue is not replayed twice by the same call.
 *
 * @example
 * const dlq = new DeadLetterQueue({ amqpUrl, queue: 'billing.order-placed' });
 * try {
 *   for (const d of await dlq.list({ reason: 'permanent-error' })) console.log(d.messageId, d.error);
 *   await dlq.replay({ reason: 'permanent-error' });
 * } finally {
 *   await dlq.close();
 * }
 */
export class DeadLetterQueue {
  /** The dead-letter queue: `<queue>.dlq`. */
  readonly name: string;
  /** The consumer's own queue, where replays go by default. */
  readonly queue: string;
  readonly #url: string;
  readonly #publishTimeoutMs: number;
  #model: Promise<ChannelModel> | undefined;

  constructor(options: DeadLetterQueueOptions) {
    if (typeof options?.amqpUrl !== 'string' || options.amqpUrl.length === 0) {
      throw new ConfigurationError('amqpUrl', 'must be an AMQP URL such as amqp://localhost');
    }
    if (typeof options.queue !== 'string' || options.queue.length === 0) {
      throw new ConfigurationError('queue', "must be the consumer's queue name");
    }
    const timeout = options.publishTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(timeout) || timeout <= 0) {
      throw new ConfigurationError(
        'publishTimeoutMs',
        `must be a positive integer, got ${timeout}`,
      );
    }
    this.#url = options.amqpUrl;
    this.queue = options.queue;
    this.name = deadLetterQueueName(options.queue);
    this.#publishTimeoutMs = timeout;
  }

  /** Messages in the dead-letter queue now: a count from the broker, nothing is read. */
  async depth(): Promise<number> {
    return (await this.#check()).messageCount;
  }

  /** Dead letters matching `filter`, in queue order; they stay in the queue. */
  async list(
    filter: DeadLetterFilter = {},
    options: QueueListOptions = {},
  ): Promise<QueuedDeadLetter[]> {
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit <= 0) {
      throw new ConfigurationError('limit', `must be a positive integer, got ${limit}`);
    }
    const found: QueuedDeadLetter[] = [];
    await this.#scan(checkFilter(filter), async (dead) => {
      const { payload: _, ...summary } = dead;
      found.push(summary);
      return found.length >= limit ? 'stop' : 'keep';
    });
    return found;
  }

  /**
   * The first dead letter with this message id, with its payload; it stays in the queue. Throws
   * `DeadLetterNotFoundError` when there is none.
   */
  async show(messageId: string): Promise<QueuedDeadLetterDetail> {
    let found: QueuedDeadLetterDetail | undefined;
    await this.#scan({ messageId }, async (dead) => {
      found = dead;
      return 'stop';
    });
    if (!found) throw new DeadLetterNotFoundError(messageId, `queue ${this.name}`);
    return found;
  }

  /**
   * Replays the first dead letter with this message id. Throws `DeadLetterNotFoundError` when
   * there is none, and a `DeadLetterReplayError` when its copy was not confirmed (the dead
   * letter then stays).
   */
  async replayOne(messageId: string, options: Omit<QueueReplayOptions, 'onProgress'> = {}) {
    const result = await this.#replay({ messageId }, { ...options }, 1);
    if (result.failed.length > 0) {
      throw new DeadLetterReplayError(messageId, this.name, result.failed[0]!.error);
    }
    if (result.done === 0) throw new DeadLetterNotFoundError(messageId, `queue ${this.name}`);
  }

  /**
   * Replays every dead letter matching `filter` (all of them with `{}`). Each copy is confirmed
   * by the broker before its dead letter is removed; a copy that is not stays where it was and
   * is reported in `failed`.
   */
  async replay(
    filter: DeadLetterFilter,
    options: QueueReplayOptions = {},
  ): Promise<DeadLetterWorkResult> {
    return this.#replay(checkFilter(filter), options, Number.POSITIVE_INFINITY);
  }

  /** Removes the first dead letter with this message id; throws when there is none. */
  async purgeOne(messageId: string): Promise<void> {
    const { done } = await this.#purge({ messageId }, undefined, 1);
    if (done === 0) throw new DeadLetterNotFoundError(messageId, `queue ${this.name}`);
  }

  /** Removes every dead letter matching `filter` for good (all of them with `{}`). */
  async purge(
    filter: DeadLetterFilter,
    options: { onProgress?: ProgressListener } = {},
  ): Promise<DeadLetterWorkResult> {
    return this.#purge(checkFilter(filter), options.onProgress, Number.POSITIVE_INFINITY);
  }

  async close(): Promise<void> {
    const model = this.#model;
    this.#model = undefined;
    await closeConnection(model);
  }

  async #purge(
    filter: DeadLetterFilter,
    onProgress: ProgressListener | undefined,
    max: number,
  ): Promise<DeadLetterWorkResult> {
    let done = 0;
    await this.#scan(filter, async () => {
      done += 1;
      onProgress?.(done, 0);
      return done >= max ? 'stop-remove' : 'remove';
    });
    return { done, failed: [] };
  }

  async #replay(
    filter: DeadLetterFilter,
    options: QueueReplayOptions,
    max: number,
  ): Promise<DeadLetterWorkResult> {
    const to = options.to ?? 'queue';
    if (to !== 'queue' && to !== 'exchange') {
      throw new ConfigurationError('to', `must be "queue" or "exchange", got ${String(to)}`);
    }
    const model = await this.#connect();
    const publisher = new ConfirmedPublisher(model, this.#publishTimeoutMs);
    let done = 0;
    const failed: ReplayFailure[] = [];
    try {
      await this.#scan(filter, async (dead, message) => {
        const id = dead.messageId ?? '(no message id)';
        try {
          const headers = replayHeaders(dead.headers, to);
          const props = replayProperties(message, headers);
          if (to === 'queue') {
            await publisher.publish('', this.queue, message.content, props);
          } else {
            if (dead.exchange === undefined || dead.routingKey === undefined) {
              throw new Error(
                'its original exchange and routing key are not recorded; replay it to the queue',
              );
            }
            await publisher.publish(dead.exchange, dead.routingKey, message.content, props);
          }
          done += 1;
        } catch (error) {
          failed.push({ id, error: errorMessage(error) });
          options.onProgress?.(done, failed.length);
          return done + failed.length >= max ? 'stop' : 'keep';
        }
        options.onProgress?.(done, failed.length);
        return done + failed.length >= max ? 'stop-remove' : 'remove';
      });
    } finally {
      await publisher.close();
    }
    return { done, failed };
  }

  /**
   * Takes the messages that are in the queue now, one by one and unacked, and lets `visit`
   * decide for each matching one; the rest are handed back in order at the end.
   */
  async #scan(
    filter: DeadLetterFilter,
    visit: (dead: QueuedDeadLetterDetail, message: Message) => Promise<Verdict>,
  ): Promise<void> {
    const total = (await this.#check()).messageCount;
    if (total === 0) return;
    const model = await this.#connect();
    const channel = await model.createChannel();
    channel.on('error', () => {});
    const now = Date.now();
    try {
      for (let seen = 0; seen < total; seen += 1) {
        const message = await channel.get(this.name, { noAck: false });
        if (message === false) return;
        const dead = describeDeadLetter(this.name, message);
        if (!matchesFilter(filter, dead, now)) continue;
        const verdict = await visit(dead, message);
        if (verdict === 'remove' || verdict === 'stop-remove') channel.ack(message);
        if (verdict === 'stop' || verdict === 'stop-remove') return;
      }
    } finally {
      // Everything not acked goes back, in delivery order, to where it was.
      await requeueAndClose(channel);
    }
  }

  async #check() {
    const model = await this.#connect();
    // A 404 closes the channel it happens on, so the check gets one of its own.
    const channel = await model.createChannel();
    channel.on('error', () => {});
    try {
      return await channel.checkQueue(this.name);
    } catch (error) {
      if ((error as { code?: unknown }).code === 404) {
        throw new OutboxkitError(
          'dead-letter-queue-not-found',
          `Queue ${JSON.stringify(this.name)} does not exist: check the consumer's queue name (its dead letters are in "<queue>.dlq")`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      await closeChannel(channel);
    }
  }

  #connect(): Promise<ChannelModel> {
    if (!this.#model) {
      const connecting = amqp.connect(this.#url).then(
        (model) => {
          model.on('error', () => {});
          model.on('close', () => {
            if (this.#model === connecting) this.#model = undefined;
          });
          return model;
        },
        (error: unknown) => {
          this.#model = undefined;
          throw new OutboxkitError(
            'amqp-connect-failed',
            `RabbitMQ at ${redactUrl(this.#url)}: ${errorMessage(error)}`,
            { cause: error },
          );
        },
      );
      this.#model = connecting;
    }
    return this.#model;
  }
}

/** A replayed copy was not confirmed; the dead letter stays in its queue. */
export class DeadLetterReplayError extends OutboxkitError {
  readonly id: string;

  constructor(id: string, queue: string, detail: string) {
    super(
      'dead-letter-replay-failed',
      `Dead letter ${JSON.stringify(id)} in ${queue} was not replayed and stays there: ${detail}`,
    );
    this.id = id;
  }
}

async function requeueAndClose(channel: Channel): Promise<void> {
  try {
    channel.nackAll(true);
  } catch {
    // Closed already: the broker requeued the unacked messages itself.
  }
  await closeChannel(channel);
}

/**
 * Publishes one copy at a time on a confirm channel and resolves once the broker confirmed it
 * and did not return it. An exchange is checked (on a channel of its own) before the first
 * publish to it, since publishing to a missing one would close the confirm channel.
 */
class ConfirmedPublisher {
  readonly #model: ChannelModel;
  readonly #timeoutMs: number;
  readonly #exchanges = new Set<string>();
  #channel: Promise<ConfirmChannel> | undefined;
  #returned = false;
  #closedReason: string | undefined;

  constructor(model: ChannelModel, timeoutMs: number) {
    this.#model = model;
    this.#timeoutMs = timeoutMs;
  }

  async publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: ReturnType<typeof replayProperties>,
  ): Promise<void> {
    if (exchange !== '') await this.#checkExchange(exchange);
    const channel = await this.#open();
    this.#returned = false;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no publisher confirm within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      try {
        channel.publish(exchange, routingKey, content, options, (error) => {
          clearTimeout(timer);
          // basic.return comes before the (positive) confirm of the same message.
          if (error) reject(new Error(`not confirmed: ${this.#closedReason ?? 'nack'}`));
          else if (this.#returned) reject(new Error(`unroutable: nothing is bound to receive it`));
          else resolve();
        });
      } catch (error) {
        clearTimeout(timer);
        this.#channel = undefined;
        reject(error);
      }
    });
  }

  async close(): Promise<void> {
    const channel = this.#channel;
    this.#channel = undefined;
    await closeChannel(channel);
  }

  async #checkExchange(name: string): Promise<void> {
    if (this.#exchanges.has(name)) return;
    const channel = await this.#model.createChannel();
    channel.on('error', () => {});
    try {
      await channel.checkExchange(name);
      this.#exchanges.add(name);
    } catch (error) {
      if ((error as { code?: unknown }).code === 404) {
        throw new Error(`exchange ${JSON.stringify(name)} does not exist`);
      }
      throw error;
    } finally {
      await closeChannel(channel);
    }
  }

  #open(): Promise<ConfirmChannel> {
    if (this.#channel) return this.#channel;
    this.#closedReason = undefined;
    const opening = this.#model.createConfirmChannel().then((channel) => {
      channel.on('error', (error: Error) => {
        this.#closedReason = `channel error: ${error.message}`;
      });
      channel.on('close', () => {
        if (this.#channel === opening) this.#channel = undefined;
      });
      channel.on('return', () => {
        this.#returned = true;
      });
      return channel;
    });
    this.#channel = opening;
    return opening;
  }
}
