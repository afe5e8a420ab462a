import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import type { Kysely } from 'kysely';
import { closeChannel } from '../amqp/close-within.js';
import { LatencyHistogram } from '../metrics/latency-histogram.js';
import { deadLetterHeaders, retryHeaders } from '../protocol/copy-headers.js';
import type { DeadLetterReason } from '../protocol/dead-letter-headers.js';
import { ORDERING_KEY_HEADER } from '../protocol/message-headers.js';
import { copyProperties } from '../protocol/message-properties.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import { type ClaimOutcome, runClaimTransaction } from './claim-transaction.js';
import { emptyConsumerStats } from './consumer-stats.js';
import { type ConsumerTopology, declareTopology, delayQueueName } from './consumer-topology.js';
import { isDatabaseUnavailable, isSerializationFailure } from './database-errors.js';
import { DeliveryDispatcher, type DispatchItem, type RunResult } from './delivery-dispatcher.js';
import { messageInfo, type ParsedDelivery, parseDelivery } from './parse-delivery.js';
import { isPermanentError } from './permanent-error.js';
import type { ProcessedQueries } from './processed-queries.js';
import type { ResolvedConsumer } from './resolve-consumer.js';

/** Serialization failures and deadlocks retried in place before they count as a failed attempt. */
const MAX_SERIALIZATION_RETRIES = 10;
const CANCEL_TIMEOUT_MS = 5000;

export interface RunnerContext {
  readonly consumer: ResolvedConsumer;
  readonly topology: ConsumerTopology;
  // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
  readonly db: Kysely<any>;
  readonly queries: ProcessedQueries;
  readonly publisher: {
    publish(queue: string, content: Buffer, options: Options.Publish): Promise<void>;
  };
  readonly logger: OutboxLogger;
  readonly reconnectBackoff: BackoffPolicy;
  /**
   * How long one delivery's transaction is retried in place while Postgres is unavailable to it,
   * before the delivery is handed back to the broker.
   */
  readonly databaseRetryLimitMs: number;
  /** Aborts when the host stops: no new deliveries, and waits for the database give up. */
  readonly stopping: AbortSignal;
}

/** A consuming channel; its deliveries can only be acked on it, while it is open. */
interface ChannelHandle {
  readonly channel: Channel;
  readonly model: ChannelModel;
  open: boolean;
  consumerTag?: string;
}

interface Work extends DispatchItem {
  readonly message: ConsumeMessage;
  readonly handle: ChannelHandle;
  parsed?: ParsedDelivery;
  /** Failures of an ordered consumer's in-place retries. */
  inPlaceFailures: number;
  firstFailedAt?: Date;
}

type Outcome =
  | ClaimOutcome
  /** Stopping, or the channel closed: the broker gets the deliveries back. */
  | { readonly kind: 'aborted' }
  /** Postgres stayed unavailable for `databaseRetryLimitMs`. */
  | { readonly kind: 'unavailable' };

/**
 * Consumes one consumer's queue: a channel with manual acks and a prefetch window, a dispatcher
 * bounding transactions to `concurrency`, and the claim-handle-commit-ack cycle with retries
 * and dead letters. Acks happen strictly after commit; a lost ack means a redelivery, which the
 * processed-messages table turns into a no-op.
 */
export class ConsumerRunner {
  readonly stats = emptyConsumerStats();
  /** Run times of handler attempts. Kept beside `stats`, which holds only counts. */
  readonly handlerSeconds = new LatencyHistogram();
  readonly #ctx: RunnerContext;
  readonly #dispatcher: DeliveryDispatcher<Work>;
  #model: ChannelModel | undefined;
  #handle: ChannelHandle | undefined;
  #attaching: Promise<void> | undefined;
  #reopenFailures = 0;
  readonly #abandoned = new Set<Promise<unknown>>();
  #waitingForDatabase = 0;

  constructor(ctx: RunnerContext) {
    this.#ctx = ctx;
    const { consumer, logger } = ctx;
    this.#dispatcher = new DeliveryDispatcher<Work>({
      concurrency: consumer.concurrency,
      batchSize: consumer.batchSize,
      ordered: consumer.ordered,
      run: (items) => this.#run(items),
      onError: (error) =>
        logger.error('consumer run failed unexpectedly', {
          consumer: consumer.name,
          error: errorMessage(error),
        }),
    });
  }

  get name(): string {
    return this.#ctx.consumer.name;
  }

  /** Transactions (or batches) in progress. */
  get active(): number {
    return this.#dispatcher.active;
  }

  /** Runs in progress plus deliveries received and waiting to run (or to retry in place). */
  get inFlight(): number {
    return this.#dispatcher.active + this.#dispatcher.waiting;
  }

  /** Transactions (or batches) now retried in place because Postgres is unavailable to them. */
  get waitingForDatabase(): number {
    return this.#waitingForDatabase;
  }

  /** The broker objects this runner consumes from and retries through. */
  get topology(): ConsumerTopology {
    return this.#ctx.topology;
  }

  /** Declares the topology and starts consuming on `model`, unless already doing so. */
  attach(model: ChannelModel): Promise<void> {
    this.#model = model;
    // One attach at a time: the host (after a reconnect) and a channel reopen may both ask.
    const previous = this.#attaching ?? Promise.resolve();
    const attaching = previous.catch(() => {}).then(() => this.#attach(model));
    this.#attaching = attaching;
    void attaching.then(
      () => this.#settleAttach(attaching),
      () => this.#settleAttach(attaching),
    );
    return attaching;
  }

  #settleAttach(attaching: Promise<void>): void {
    if (this.#attaching === attaching) this.#attaching = undefined;
  }

  /** The connection is gone; its channel and deliveries with it. */
  detach(model: ChannelModel): void {
    if (this.#model === model) this.#model = undefined;
  }

  /** Cancels the consumer and hands every delivery not yet started back to the queue. */
  async stopConsuming(): Promise<void> {
    const handle = this.#handle;
    if (handle?.open && handle.consumerTag !== undefined) {
      await withTimeout(handle.channel.cancel(handle.consumerTag), CANCEL_TIMEOUT_MS).catch(
        () => {},
      );
    }
    this.#requeue(this.#dispatcher.remove(() => true));
  }

  /** Resolves once running transactions, and rollbacks given up on after a time-out, are over. */
  async drained(): Promise<void> {
    await this.#dispatcher.idle();
    await Promise.all(this.#abandoned);
  }

  async close(): Promise<void> {
    const handle = this.#handle;
    this.#handle = undefined;
    this.#model = undefined;
    if (handle?.open) await closeChannel(handle.channel);
  }

  async #attach(model: ChannelModel): Promise<void> {
    // Superseded by a newer connection, or already consuming on this one.
    if (this.#model !== model) return;
    if (this.#handle?.open && this.#handle.model === model) return;
    const { consumer, topology, logger } = this.#ctx;
    await declareTopology(model, [topology]);
    const channel = await model.createChannel();
    const handle: ChannelHandle = { channel, model, open: true };
    this.#handle = handle;
    channel.on('error', (error: Error) =>
      logger.warn('consumer channel error', {
        consumer: consumer.name,
        error: errorMessage(error),
      }),
    );
    channel.on('close', () => this.#onChannelClosed(handle));
    await channel.prefetch(consumer.prefetch);
    const { consumerTag } = await channel.consume(
      topology.queue.name,
      (message) => this.#onMessage(handle, message),
      { noAck: false },
    );
    handle.consumerTag = consumerTag;
    this.#reopenFailures = 0;
    // The host began stopping while this attach was under way (a reconnect).
    if (this.#ctx.stopping.aborted) await closeChannel(channel);
  }

  #onChannelClosed(handle: ChannelHandle): void {
    handle.open = false;
    // The broker requeues the channel's unacked deliveries; copies here would be handled twice.
    this.#dispatcher.remove((work) => work.handle === handle);
    if (this.#handle === handle) this.#handle = undefined;
    const { stopping, reconnectBackoff, logger, consumer } = this.#ctx;
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

  #onMessage(handle: ChannelHandle, message: ConsumeMessage | null): void {
    const { consumer, logger, stopping } = this.#ctx;
    if (message === null) {
      // The broker cancelled the consumer (its queue was deleted): start over on a new channel,
      // which declares the topology again.
      logger.warn('RabbitMQ cancelled the consumer; declaring its queue again', {
        consumer: consumer.name,
      });
      void closeChannel(handle.channel);
      return;
    }
    this.stats.received += 1;
    if (message.fields.redelivered) this.stats.redelivered += 1;
    const work: Work = {
      orderingKey: consumer.ordered ? orderingKeyOf(message) : undefined,
      message,
      handle,
      inPlaceFailures: 0,
    };
    if (stopping.aborted) {
      this.#requeue([work]);
      return;
    }
    this.#dispatcher.push(work);
  }

  async #run(items: Work[]): Promise<RunResult> {
    const ready: Work[] = [];
    for (const work of items) {
      // A closed channel's deliveries come back from the broker.
      if (!work.handle.open) continue;
      if (!work.parsed) {
        const result = await parseDelivery(this.#ctx.consumer, work.message);
        if (!result.ok) {
          await this.#deadLetter(work, result.rejection.reason, result.rejection.error, 0);
          continue;
        }
        work.parsed = result.delivery;
      }
      ready.push(work);
    }
    if (ready.length === 0) return undefined;
    if (ready.length === 1) return this.#runOne(ready[0]!);
    await this.#runBatch(ready);
    return undefined;
  }

  async #runOne(work: Work): Promise<RunResult> {
    const outcome = await this.#transact([work]);
    switch (outcome.kind) {
      case 'committed':
        this.#count(outcome.handled);
        this.#ack(work);
        return undefined;
      case 'aborted':
        this.#requeue([work]);
        return undefined;
      case 'unavailable':
        this.#handBack(work);
        return undefined;
      case 'timed-out':
        this.stats.timeouts += 1;
        return this.#failed(work, outcome.error);
      case 'failed':
        return this.#failed(work, outcome.error);
    }
  }

  /**
   * Gives a delivery that waited out `databaseRetryLimitMs` back to the broker, uncommitted and
   * unacked, without counting an attempt: the outage is not the message's fault. Another
   * process, whose database may be reachable, can take it; this one gets it again otherwise.
   * An ordered consumer closes its channel instead: the broker then requeues every unacked
   * delivery of it in queue order, while a single requeue would let the later messages of the
   * key, already sent ahead, pass this one. The channel is reopened as after any channel error.
   */
  #handBack(work: Work): void {
    this.stats.databaseRequeues += 1;
    this.#ctx.logger.warn('database unavailable for too long; handing the delivery back', {
      consumer: this.name,
      messageId: work.parsed?.info.messageId,
      limitMs: this.#ctx.databaseRetryLimitMs,
    });
    const { handle } = work;
    if (this.#ctx.consumer.ordered) {
      if (!handle.open) return;
      // From now on nothing of this channel runs, or a later message of the key could run
      // while the close is under way: all of them come back from the broker, in order.
      handle.open = false;
      this.#dispatcher.remove((other) => other.handle === handle);
      void closeChannel(handle.channel);
      return;
    }
    this.#requeue([work]);
  }

  async #runBatch(works: Work[]): Promise<void> {
    this.stats.batches += 1;
    const outcome = await this.#transact(works);
    if (outcome.kind === 'committed') {
      this.#count(outcome.handled);
      for (const work of works) this.#ack(work);
      return;
    }
    if (outcome.kind === 'aborted') {
      this.#requeue(works);
      return;
    }
    if (outcome.kind === 'unavailable') {
      // Batches are unordered: each delivery may go back on its own.
      for (const work of works) this.#handBack(work);
      return;
    }
    // Everything rolled back. Doing the messages one by one retries only the failing one; a
    // time-out is charged to its message at once, which would only hold a slot that long again.
    let rest = works;
    if (outcome.kind === 'timed-out') {
      this.stats.timeouts += 1;
      const late = works[outcome.index]!;
      rest = works.filter((work) => work !== late);
      // Batches are unordered, so this never asks for an in-place retry.
      await this.#failed(late, outcome.error);
    }
    this.stats.batchFallbacks += 1;
    this.#ctx.logger.debug('batch rolled back; handling its messages one at a time', {
      consumer: this.name,
      size: works.length,
      error: errorMessage(outcome.error),
    });
    for (const work of rest) {
      if (work.handle.open) await this.#runOne(work);
    }
  }

  /** One claim transaction, run again after serialization failures and database outages. */
  async #transact(works: Work[]): Promise<Outcome> {
    const { db, queries, consumer, logger, reconnectBackoff, stopping } = this.#ctx;
    const deps = {
      db,
      queries,
      consumer,
      logger,
      onAbandoned: (rollback: Promise<unknown>) => {
        this.#abandoned.add(rollback);
        void rollback.finally(() => this.#abandoned.delete(rollback));
      },
      handlerSeconds: this.handlerSeconds,
    };
    let conflicts = 0;
    let outages = 0;
    let outageSince: number | undefined;
    try {
      for (;;) {
        const tasks = works.map((work) => ({
          delivery: work.parsed!,
          attempt: this.#attemptOf(work),
        }));
        const outcome = await runClaimTransaction(deps, tasks);
        if (outcome.kind !== 'failed') return outcome;
        const { error } = outcome;
        if (isSerializationFailure(error) && conflicts < MAX_SERIALIZATION_RETRIES) {
          conflicts += 1;
          this.stats.serializationRetries += 1;
          // A little jitter so the two transactions that collided do not collide again.
          await abortableDelay(Math.floor(Math.random() * 5 * conflicts));
          continue;
        }
        // Only the transaction's own statements speak for the database: a handler's error with
        // the same code (its HTTP or Redis client refused) is a failure of the handler.
        if (outcome.source === 'transaction' && isDatabaseUnavailable(error)) {
          const now = Date.now();
          if (outageSince === undefined) {
            outageSince = now;
            this.#waitingForDatabase += 1;
          }
          const left = outageSince + this.#ctx.databaseRetryLimitMs - now;
          if (left <= 0) return { kind: 'unavailable' };
          outages += 1;
          this.stats.databaseRetries += 1;
          const delay = Math.min(backoffDelay(reconnectBackoff, outages), left);
          logger.warn('database unavailable; retrying the transaction', {
            consumer: consumer.name,
            error: errorMessage(error),
            retryInMs: delay,
          });
          await abortableDelay(delay, stopping);
          if (stopping.aborted || works.every((work) => !work.handle.open))
            return { kind: 'aborted' };
          continue;
        }
        return outcome;
      }
    } finally {
      if (outageSince !== undefined) this.#waitingForDatabase -= 1;
    }
  }

  #attemptOf(work: Work): number {
    return (work.parsed?.failedAttempts ?? 0) + work.inPlaceFailures + 1;
  }

  async #failed(work: Work, error: unknown): Promise<RunResult> {
    const { consumer, topology, logger } = this.#ctx;
    this.stats.failures += 1;
    const attempts = this.#attemptOf(work);
    const at = new Date();
    work.firstFailedAt ??= at;
    const permanent = isPermanentError(error);
    if (permanent || attempts >= consumer.maxAttempts) {
      await this.#deadLetter(
        work,
        permanent ? 'permanent-error' : 'retries-exhausted',
        error,
        attempts,
      );
      return undefined;
    }
    const delayMs = consumer.retryDelaysMs[attempts - 1]!;
    logger.warn('handler failed; retrying later', {
      consumer: consumer.name,
      messageId: work.parsed?.info.messageId,
      attempt: attempts,
      retryInMs: delayMs,
      error: errorMessage(error),
    });
    if (consumer.ordered) {
      // Retried in place: the delivery stays unacked and its key holds back later messages.
      work.inPlaceFailures += 1;
      this.stats.retried += 1;
      return { retryAfterMs: delayMs };
    }
    const info = work.parsed!.info;
    const headers = retryHeaders(info.headers, attempts, {
      error,
      at,
      exchange: info.exchange,
      routingKey: info.routingKey,
    });
    if (await this.#forward(work, delayQueueName(topology.queue.name, delayMs), headers)) {
      this.stats.retried += 1;
    }
    return undefined;
  }

  async #deadLetter(
    work: Work,
    reason: DeadLetterReason,
    error: unknown,
    attempts: number,
  ): Promise<void> {
    const { consumer, topology, logger } = this.#ctx;
    const info = work.parsed?.info ?? messageInfo(work.message, 0);
    const headers = deadLetterHeaders(info.headers, reason, consumer.name, attempts, {
      error,
      at: new Date(),
      ...(work.firstFailedAt && { firstAt: work.firstFailedAt }),
      exchange: info.exchange,
      routingKey: info.routingKey,
    });
    logger.warn('message dead-lettered', {
      consumer: consumer.name,
      messageId: info.messageId,
      reason,
      attempts,
      error: errorMessage(error),
    });
    if (await this.#forward(work, topology.deadLetterQueue.name, headers)) {
      this.stats.deadLettered += 1;
    }
  }

  /**
   * Moves a delivery to another of the consumer's queues: the copy first, confirmed, then the
   * ack. When the copy fails the delivery is requeued after a pause, so a broker refusing
   * copies cannot cause a tight redelivery loop.
   */
  async #forward(work: Work, queue: string, headers: Record<string, unknown>): Promise<boolean> {
    const { publisher, logger, reconnectBackoff, stopping, consumer } = this.#ctx;
    try {
      await publisher.publish(queue, work.message.content, copyProperties(work.message, headers));
    } catch (error) {
      logger.warn('could not move a message; requeueing it', {
        consumer: consumer.name,
        queue,
        error: errorMessage(error),
      });
      await abortableDelay(backoffDelay(reconnectBackoff, 4), stopping);
      this.#requeue([work]);
      return false;
    }
    this.#ack(work);
    return true;
  }

  #count(handled: readonly boolean[]): void {
    for (const ran of handled) {
      if (ran) this.stats.handled += 1;
      else this.stats.duplicates += 1;
    }
  }

  #ack(work: Work): void {
    if (!work.handle.open) return;
    try {
      work.handle.channel.ack(work.message);
    } catch {
      // The channel closed meanwhile: the broker redelivers, and the dedupe row absorbs it.
    }
  }

  /** Nacks with requeue, in delivery order, so requeued messages keep their places. */
  #requeue(works: Work[]): void {
    const sorted = [...works].sort(
      (a, b) => a.message.fields.deliveryTag - b.message.fields.deliveryTag,
    );
    for (const work of sorted) {
      this.stats.requeued += 1;
      if (!work.handle.open) continue;
      try {
        work.handle.channel.nack(work.message, false, true);
      } catch {
        // Closed meanwhile: requeued by the broker anyway.
      }
    }
  }
}

function orderingKeyOf(message: ConsumeMessage): string | undefined {
  const key = message.properties.headers?.[ORDERING_KEY_HEADER];
  return typeof key === 'string' && key.length > 0 ? key : undefined;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
