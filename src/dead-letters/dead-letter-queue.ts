import type { ConnectionOptions } from 'node:tls';
import type { ChannelModel, Message, Replies } from 'amqplib';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { type AmqpUrls, amqpUrlList } from '../amqp/amqp-urls.js';
import { closeChannel, closeConnection } from '../amqp/close-within.js';
import { connectAmqpFirst } from '../amqp/connect-amqp.js';
import { queueInfoOn } from '../amqp/queue-info.js';
import {
  DEAD_LETTER_QUEUE_ARGUMENTS,
  deadLetterQueueName,
  isOtherQueueType,
} from '../consumer/consumer-topology.js';
import { partitionCountOf, partitionExchangeName } from '../consumer/partition-set.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { optionNames } from '../options/option-names.js';
import type { TlsOptions } from '../options/tls-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { type ReplayTarget, replayHeaders } from '../protocol/copy-headers.js';
import { vhostOf } from '../start/misconfiguration.js';
import { durationMs } from '../util/duration-option.js';
import { errorMessage } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { positiveInteger } from '../util/positive-integer.js';
import {
  checkFilter,
  checkMessageId,
  type DeadLetterFilter,
  matchesFilter,
} from './dead-letter-filter.js';
import { DeadLetterNotFoundError } from './dead-letter-not-found-error.js';
import { DeadLetterQueueBusyError } from './dead-letter-queue-busy-error.js';
import { DeadLetterQueueWearsOutError } from './dead-letter-queue-wears-out-error.js';
import { DeadLetterReplayError } from './dead-letter-replay-error.js';
import { DeadLetterScanInterruptedError } from './dead-letter-scan-interrupted-error.js';
import { ExclusiveQueueReader } from './exclusive-queue-reader.js';
import {
  describeDeadLetter,
  type QueuedDeadLetter,
  type QueuedDeadLetterDetail,
  replayProperties,
} from './queued-dead-letter.js';
import { ReplayPublisher } from './replay-publisher.js';
import type { DeadLetterWorkResult, ProgressListener, ReplayFailure } from './replay-result.js';
import { scanTurnKey, takeScanTurn } from './scan-turns.js';
import { workOptions } from './work-options.js';

export interface DeadLetterQueueOptions {
  /**
   * RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`, or the URLs of several
   * cluster nodes, tried in turn until one connects.
   */
  readonly amqpUrl: AmqpUrls;
  /** TLS settings (CA, client certificate and key) for `amqps://` URLs. Default Node's. */
  readonly amqpTls?: TlsOptions | undefined;
  /** The consumer's queue (by default its name); its dead letters are in `<queue>.dlq`. */
  readonly queue: string;
  /** How long one replayed copy may wait for its publisher confirm. Default 30 s. */
  readonly publishTimeoutMs?: number | undefined;
  /**
   * How long an operation waits while another reader (a dashboard, a CLI, a replay, in this
   * process or another) has the dead-letter queue, before it throws a
   * `DeadLetterQueueBusyError`. Default 5 s.
   */
  readonly busyTimeoutMs?: number | undefined;
}

/** Every option of `DeadLetterQueueOptions`, for the options table in docs/options.md. */
export const DEAD_LETTER_QUEUE_OPTION_NAMES = optionNames<DeadLetterQueueOptions>()([
  'amqpUrl',
  'amqpTls',
  'queue',
  'publishTimeoutMs',
  'busyTimeoutMs',
]);

/** Options of `list`. */
export interface QueueListOptions {
  /** At most this many, in queue order. Default 100. */
  readonly limit?: number | undefined;
}

/** Options of `replay`. */
export interface QueueReplayOptions {
  /**
   * Back to the consumer only (default): its queue, or for a partitioned consumer its partition
   * set, which routes each copy to its key's partition. Or `exchange`: to the original exchange
   * and routing key, where every bound queue gets a copy.
   */
  readonly to?: ReplayTarget | undefined;
  /** Called after each dead letter handled, with the counts so far. */
  readonly onProgress?: ProgressListener | undefined;
}

/** What a scan does with one dead letter. */
type Verdict = 'keep' | 'remove' | 'stop' | 'stop-remove';

/**
 * Reads, replays and purges the dead letters of one consumer. Reading never loses a message:
 * messages are taken unacked, and what is kept is handed back in place at the end, or by the
 * broker if the process dies. Reading leaves no trace either, since the dead-letter queue is a
 * classic queue, which counts no deliveries; one that is not (declared by an earlier outboxkit)
 * is not read: `list` and `show` throw a `DeadLetterQueueWearsOutError`.
 *
 * A message taken is hidden from every other reader meanwhile, so operations on one dead-letter
 * queue take turns, within a process and across processes (see `ExclusiveQueueReader`): each
 * sees the whole queue, never the part another left visible. One that waits past
 * `busyTimeoutMs` for its turn throws a `DeadLetterQueueBusyError` and has done nothing.
 *
 * A replay publishes a copy with a publisher confirm and acks the dead letter only after that,
 * so a crash in between leaves a duplicate (which the consumer dedupes by message id), never a
 * loss.
 *
 * Each operation looks at the messages that were in the queue when its turn began, at most: a
 * replay that fails again and comes back to the queue is not replayed twice by the same call.
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
  readonly #urls: readonly string[];
  readonly #tls: ConnectionOptions | undefined;
  readonly #publishTimeoutMs: number;
  readonly #busyTimeoutMs: number;
  readonly #turnKey: string;
  #model: Promise<ChannelModel> | undefined;
  /** The queue was found to be a classic queue: reading it has no effect on it. */
  #classic = false;

  constructor(options: DeadLetterQueueOptions) {
    rejectUnknownOptions(options, DEAD_LETTER_QUEUE_OPTION_NAMES, { owner: 'DeadLetterQueue' });
    const urls = amqpUrlList(options?.amqpUrl);
    this.#tls = amqpTlsFor(urls, options.amqpTls);
    if (typeof options.queue !== 'string' || options.queue.length === 0) {
      throw new ConfigurationError('queue', "must be the consumer's queue name");
    }
    const timeout = durationMs('publishTimeoutMs', options.publishTimeoutMs, 30_000);
    this.#urls = urls;
    this.queue = options.queue;
    this.name = deadLetterQueueName(options.queue);
    this.#publishTimeoutMs = timeout;
    this.#busyTimeoutMs = durationMs('busyTimeoutMs', options.busyTimeoutMs, 5_000);
    this.#turnKey = scanTurnKey(urls, this.name);
  }

  /** Messages in the dead-letter queue now: a count from the broker, nothing is read. */
  async depth(): Promise<number> {
    return (await this.#check()).messageCount;
  }

  /**
   * Dead letters matching `filter`, in queue order; they stay in the queue, unchanged. Throws a
   * `DeadLetterQueueWearsOutError` for a dead-letter queue that is not a classic queue.
   */
  async list(
    filter: DeadLetterFilter = {},
    listOptions?: QueueListOptions,
  ): Promise<QueuedDeadLetter[]> {
    const options = workOptions(listOptions, ['limit'], 'DeadLetterQueue.list');
    const limit = positiveInteger('limit', options.limit, 100);
    // Checked before the queue is: a wrong filter is refused whether or not the queue exists.
    const checked = checkFilter(filter);
    const found: QueuedDeadLetter[] = [];
    await this.#ensureReadable();
    await this.#scan(checked, async (dead) => {
      const { payload: _, ...summary } = dead;
      found.push(summary);
      return found.length >= limit ? 'stop' : 'keep';
    });
    return found;
  }

  /**
   * The first dead letter with this message id, with its payload; it stays in the queue,
   * unchanged. Throws `DeadLetterNotFoundError` when there is none, and a
   * `DeadLetterQueueWearsOutError` for a dead-letter queue that is not a classic queue.
   */
  async show(messageId: string): Promise<QueuedDeadLetterDetail> {
    checkMessageId(messageId);
    let found: QueuedDeadLetterDetail | undefined;
    await this.#ensureReadable();
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
  async replayOne(messageId: string, replayOptions?: Omit<QueueReplayOptions, 'onProgress'>) {
    const options = workOptions(replayOptions, ['to'], 'DeadLetterQueue.replayOne');
    const result = await this.#replay({ messageId: checkMessageId(messageId) }, { ...options }, 1);
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
    replayOptions?: QueueReplayOptions,
  ): Promise<DeadLetterWorkResult> {
    const options = workOptions(replayOptions, ['to', 'onProgress'], 'DeadLetterQueue.replay');
    return this.#replay(checkFilter(filter, true), options, Number.POSITIVE_INFINITY);
  }

  /** Removes the first dead letter with this message id; throws when there is none. */
  async purgeOne(messageId: string): Promise<void> {
    const { done } = await this.#purge({ messageId: checkMessageId(messageId) }, undefined, 1);
    if (done === 0) throw new DeadLetterNotFoundError(messageId, `queue ${this.name}`);
  }

  /** Removes every dead letter matching `filter` for good (all of them with `{}`). */
  async purge(
    filter: DeadLetterFilter,
    purgeOptions?: { onProgress?: ProgressListener | undefined },
  ): Promise<DeadLetterWorkResult> {
    const options = workOptions(purgeOptions, ['onProgress'], 'DeadLetterQueue.purge');
    return this.#purge(checkFilter(filter, true), options.onProgress, Number.POSITIVE_INFINITY);
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
    try {
      await this.#scan(filter, async () => {
        done += 1;
        onProgress?.(done, 0);
        return done >= max ? 'stop-remove' : 'remove';
      });
    } catch (error) {
      throw withProgress(error, done, 0, 'removed');
    }
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
    // A partitioned consumer has no queue by its name: "back to the consumer" is then its
    // partition set, which hashes each copy to its key's partition.
    const queueExists = to === 'queue' && (await this.#checkQueue(this.queue)) !== undefined;
    const model = await this.#connect();
    const publisher = new ReplayPublisher(model, this.#publishTimeoutMs);
    let done = 0;
    const failed: ReplayFailure[] = [];
    try {
      await this.#scan(filter, async (dead, message) => {
        const id = dead.messageId ?? '(no message id)';
        try {
          const headers = replayHeaders(dead.headers, to);
          const props = replayProperties(message, headers);
          if (to === 'queue' && queueExists) {
            await publisher.publish('', this.queue, message.content, props);
          } else if (to === 'queue') {
            const count =
              dead.consumedFrom === undefined
                ? undefined
                : partitionCountOf(this.queue, dead.consumedFrom);
            if (count === undefined) {
              throw new Error(
                `queue ${JSON.stringify(this.queue)} does not exist and the dead letter does not name a partition of it; replay it with to: "exchange" (CLI: --to exchange)`,
              );
            }
            await publisher.publish(
              partitionExchangeName(this.queue, count),
              dead.routingKey ?? '',
              message.content,
              props,
            );
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
    } catch (error) {
      throw withProgress(error, done, failed.length, 'replayed');
    } finally {
      await publisher.close();
    }
    return { done, failed };
  }

  /**
   * Takes the messages that are in the queue now, in order, one by one and unacked, and lets
   * `visit` decide for each matching one; the rest are handed back in place at the end. The scan
   * waits for its turn first (see `ExclusiveQueueReader`), so no other reader holds any of them.
   */
  async #scan(
    filter: DeadLetterFilter,
    visit: (dead: QueuedDeadLetterDetail, message: Message) => Promise<Verdict>,
  ): Promise<void> {
    const startedAt = monotonicMs();
    const deadline = startedAt + this.#busyTimeoutMs;
    const endTurn = await takeScanTurn(this.#turnKey, this.name, startedAt, deadline);
    try {
      const { messageCount, consumerCount } = await this.#check();
      // Nothing waiting and no reader holding anything: empty, with no lock to take. A count
      // of 0 alone could be another reader holding every message.
      if (messageCount === 0 && consumerCount === 0) return;
      const model = await this.#connect();
      const reader = await ExclusiveQueueReader.open(model, this.name, startedAt, deadline).catch(
        (error: unknown) => this.#gone(error),
      );
      const now = Date.now();
      try {
        for (;;) {
          const message = await reader.next();
          if (message === false) return;
          const dead = describeDeadLetter(this.name, message);
          if (!matchesFilter(filter, dead, now)) continue;
          const verdict = await visit(dead, message);
          if (verdict === 'remove' || verdict === 'stop-remove') reader.ack(message);
          if (verdict === 'stop' || verdict === 'stop-remove') return;
        }
      } catch (error) {
        return await this.#gone(error);
      } finally {
        await reader.close();
      }
    } finally {
      endTurn();
    }
  }

  /**
   * Refuses to read a queue that counts deliveries. AMQP cannot tell a queue's type, so the
   * queue is declared again as what consumers declare, on a channel of its own: a no-op on a
   * classic queue, a 406 on a quorum queue. The queue exists (checked first), so nothing is
   * created.
   */
  async #ensureReadable(): Promise<void> {
    if (this.#classic) return;
    await this.#check();
    const model = await this.#connect();
    const channel = await model.createChannel();
    channel.on('error', () => {});
    try {
      await channel.assertQueue(this.name, {
        durable: true,
        arguments: { ...DEAD_LETTER_QUEUE_ARGUMENTS },
      });
      this.#classic = true;
    } catch (error) {
      if (isOtherQueueType(error)) throw new DeadLetterQueueWearsOutError(this.name, error);
      // Another difference (durability, arguments) says nothing of delivery counts.
      if ((error as { code?: unknown }).code !== 406) throw error;
    } finally {
      await closeChannel(channel);
    }
  }

  /**
   * How many consumers the consumer's queue (where a replay goes back to) has now; undefined
   * when it does not exist (a partitioned consumer's). A replay there waits for one.
   */
  async queueConsumers(): Promise<number | undefined> {
    return (await this.#checkQueue(this.queue))?.consumerCount;
  }

  async #check() {
    const found = await this.#checkQueue(this.name);
    if (found === undefined) throw this.#notFound();
    return found;
  }

  /** The queue's counts, or undefined when it does not exist. */
  async #checkQueue(queue: string): Promise<Replies.AssertQueue | undefined> {
    return queueInfoOn(await this.#connect(), queue);
  }

  #notFound(cause?: unknown): OutboxkitError {
    return new OutboxkitError(
      'dead-letter-queue-not-found',
      `Queue ${JSON.stringify(this.name)} does not exist in virtual host ${JSON.stringify(vhostOf(this.#urls[0]!))}: check the consumer's queue name (its dead letters are in "<queue>.dlq") and the virtual host of the AMQP URL`,
      cause === undefined ? undefined : { cause },
    );
  }

  /**
   * A read that failed because the queue was deleted under it (a 404 closes the channel, so what
   * follows fails as "Channel closed") is told as the queue not found; anything else as it came.
   */
  async #gone(error: unknown): Promise<never> {
    if ((error as { code?: unknown }).code === 404) throw this.#notFound(error);
    // Waiting for another reader is not the queue's absence: no round trip to ask.
    if (error instanceof DeadLetterQueueBusyError) throw error;
    const gone = await this.#checkQueue(this.name).then(
      (found) => found === undefined,
      () => false,
    );
    if (gone) throw this.#notFound(error);
    throw error instanceof OutboxkitError
      ? error
      : new DeadLetterScanInterruptedError(this.name, error);
  }

  #connect(): Promise<ChannelModel> {
    if (!this.#model) {
      const connecting = connectAmqpFirst(this.#urls, {
        connectionName: `outboxkit-dead-letters-${process.pid}`,
        tls: this.#tls,
      }).then(
        (model) => {
          model.on('close', () => {
            if (this.#model === connecting) this.#model = undefined;
          });
          return model;
        },
        (error: unknown) => {
          this.#model = undefined;
          throw error;
        },
      );
      this.#model = connecting;
    }
    return this.#model;
  }
}

/** An interrupted scan's error with how far a replay or purge got. */
function withProgress(error: unknown, done: number, failed: number, verb: string): unknown {
  if (!(error instanceof DeadLetterScanInterruptedError)) return error;
  return new DeadLetterScanInterruptedError(error.queue, error.cause, { done, failed, verb });
}
