import type { ChannelModel, ConsumeMessage } from 'amqplib';
import type { Kysely } from 'kysely';
import { LatencyHistogram } from '../metrics/latency-histogram.js';
import type { StatementNames } from '../sql/statement-names.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import type { StopDeadline } from './claim-transaction.js';
import { ConsumerChannel, type ConsumerChannelHandle } from './consumer-channel.js';
import { type ConsumerStats, emptyConsumerStats } from './consumer-stats.js';
import type { ConsumerTopology } from './consumer-topology.js';
import type { ConsumerTransactions } from './consumer-transactions.js';
import { DatabaseRetryLoop } from './database-retry-loop.js';
import { DeliveryDispatcher } from './delivery-dispatcher.js';
import { DeliveryProcessor } from './delivery-processor.js';
import { type CopyPublisher, FailureRouter } from './failure-router.js';
import { LastFailure } from './last-failure.js';
import type { ProcessedQueries } from './processed-queries.js';
import { type ReceivedDelivery, receivedDelivery } from './received-delivery.js';
import type { ResolvedConsumer } from './resolve-consumer.js';
import { handBack, handBackAtStop, requeue } from './settle-delivery.js';

export interface RunnerContext {
  readonly consumer: ResolvedConsumer;
  /** The queue this runner consumes: the consumer's own, or one of its partitions. */
  readonly topology: ConsumerTopology;
  /**
   * The consumer's totals and handler run times, shared by the runners of one consumer's
   * partitions. Default: the runner's own.
   */
  readonly totals?: {
    readonly stats: ConsumerStats;
    readonly handlerSeconds: LatencyHistogram;
    readonly lastFailure: LastFailure;
  };
  // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
  readonly db: Kysely<any>;
  readonly queries: ProcessedQueries;
  /** Sends the claim by name when the driver can (the host's, shared by its runners). */
  readonly statementNames?: StatementNames;
  /** Opens the handlers' transactions with an ORM instead of `db` (the host's option). */
  readonly transactions?: ConsumerTransactions<unknown> | undefined;
  readonly publisher: CopyPublisher;
  readonly logger: OutboxLogger;
  readonly reconnectBackoff: BackoffPolicy;
  /**
   * How long one delivery's transaction is retried in place while Postgres is unavailable to it,
   * before the delivery is handed back to the broker.
   */
  readonly databaseRetryLimitMs: number;
  /** Aborts when the host stops: no new deliveries, and waits for the database give up. */
  readonly stopping: AbortSignal;
  /** Aborts when the host's stop gives up on running handlers. */
  readonly stopDeadline?: StopDeadline;
}

/**
 * Consumes one consumer's queue. It wires the parts together and is what the host sees:
 * the channel (`ConsumerChannel`) hands deliveries to a dispatcher (`DeliveryDispatcher`) that
 * bounds transactions to `concurrency`; each run (`DeliveryProcessor`) claims and handles its
 * deliveries in a transaction retried through database outages (`DatabaseRetryLoop`), then
 * acks them, or routes failures to a retry or the dead-letter queue (`FailureRouter`).
 */
export class ConsumerRunner {
  readonly stats: ConsumerStats;
  /** Run times of handler attempts. Kept beside `stats`, which holds only counts. */
  readonly handlerSeconds: LatencyHistogram;
  readonly lastFailure: LastFailure;
  readonly #ctx: RunnerContext;
  readonly #channel: ConsumerChannel;
  readonly #dispatcher: DeliveryDispatcher<ReceivedDelivery>;
  readonly #transactions: DatabaseRetryLoop;
  /** Deliveries since `takeActivity` last asked. */
  #recentDeliveries = 0;

  constructor(ctx: RunnerContext) {
    this.#ctx = ctx;
    this.stats = ctx.totals?.stats ?? emptyConsumerStats();
    this.handlerSeconds = ctx.totals?.handlerSeconds ?? new LatencyHistogram();
    this.lastFailure = ctx.totals?.lastFailure ?? new LastFailure();
    const { consumer, logger } = ctx;
    const { stats } = this;
    this.#channel = new ConsumerChannel({
      ...ctx,
      onDelivery: (handle, message) => this.#onDelivery(handle, message),
      // The broker requeues the channel's unacked deliveries; copies here would be handled twice.
      onClosed: (handle) => this.#dispatcher.remove((delivery) => delivery.handle === handle),
    });
    const giveBack = (delivery: ReceivedDelivery) =>
      handBack(delivery, consumer.ordered, (handle) => this.#channel.retire(handle), stats);
    this.#transactions = new DatabaseRetryLoop({
      ...ctx,
      stats,
      handlerSeconds: this.handlerSeconds,
    });
    const processor = new DeliveryProcessor({
      ...ctx,
      stats,
      transactions: this.#transactions,
      failures: new FailureRouter({
        ...ctx,
        stats,
        lastFailure: this.lastFailure,
        declareTopology: () => this.#channel.declareAgain(),
        handBack: giveBack,
      }),
      handBack: giveBack,
    });
    this.#dispatcher = new DeliveryDispatcher<ReceivedDelivery>({
      concurrency: consumer.concurrency,
      batchSize: consumer.batchSize,
      ordered: consumer.ordered,
      run: (deliveries) => processor.run(deliveries),
      onError: (error, deliveries) => {
        logger.error(
          'consumer run failed unexpectedly; its channel is closed so that the broker hands its deliveries back',
          { consumer: consumer.name, error: errorMessage(error) },
        );
        // Left unsettled, they would hold their prefetch slots until the host stops, and an
        // ordered key's later messages would pass them: the close requeues them in order.
        for (const handle of new Set(deliveries.map((d) => d.handle))) {
          this.#channel.retire(handle);
        }
      },
    });
  }

  get name(): string {
    return this.#ctx.consumer.name;
  }

  /** The most deliveries it handles at once (a partitioned consumer's, on each partition). */
  get concurrency(): number {
    return this.#ctx.consumer.concurrency;
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
    return this.#transactions.waiting;
  }

  /** What the latest of them failed with, while any waits; else undefined. */
  get databaseWaitError(): unknown {
    return this.#transactions.waitingError;
  }

  /** The broker objects this runner consumes from and retries through. */
  get topology(): ConsumerTopology {
    return this.#ctx.topology;
  }

  /** Whether deliveries arrived since the last call: this runner is its queue's active consumer. */
  takeActivity(): boolean {
    const active = this.#recentDeliveries > 0;
    this.#recentDeliveries = 0;
    return active;
  }

  /** Hands the queue to another process's consumer; see `ConsumerChannel.handOver`. */
  handOver(): boolean {
    this.#recentDeliveries = 0;
    return this.#channel.handOver();
  }

  /**
   * Declares the topology and starts consuming on `model`, unless already doing so; `declared`
   * when the host has just declared it (see `ConsumerChannel.attach`).
   */
  attach(model: ChannelModel, declared = false): Promise<void> {
    return this.#channel.attach(model, declared);
  }

  /** The connection is gone; its channel and deliveries with it. */
  detach(model: ChannelModel): void {
    this.#channel.detach(model);
  }

  /**
   * Cancels the consumer and hands every delivery not yet started back to the queue. They are
   * taken from the dispatcher at once, so none starts while a broker that hangs holds the
   * cancel, and handed back after it, so the broker does not send them straight back here.
   * An ordered consumer's stay unacked until the stop closes its channel (`handBackAtStop`).
   */
  async stopConsuming(): Promise<void> {
    const waiting = this.#dispatcher.remove(() => true);
    // Not cancelled: a quorum queue puts the deliveries a cancel catches on their way behind
    // their keys' later messages. What arrives from now on waits unacked for the close.
    if (this.#ctx.consumer.ordered) return;
    await this.#channel.cancel();
    requeue(waiting, this.stats);
  }

  /** Resolves once running transactions, and rollbacks given up on after a time-out, are over. */
  async drained(): Promise<void> {
    await this.#dispatcher.idle();
    await this.#transactions.abandonedSettled();
  }

  close(): Promise<void> {
    return this.#channel.close();
  }

  #onDelivery(handle: ConsumerChannelHandle, message: ConsumeMessage): void {
    this.stats.received += 1;
    this.#recentDeliveries += 1;
    if (message.fields.redelivered) this.stats.redelivered += 1;
    const delivery = receivedDelivery(message, handle, this.#ctx.consumer.ordered);
    if (this.#ctx.stopping.aborted) {
      handBackAtStop([delivery], this.#ctx.consumer.ordered, this.stats);
      return;
    }
    this.#dispatcher.push(delivery);
  }
}
