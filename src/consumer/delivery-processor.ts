import { errorMessage, type OutboxLogger } from '../util/logger.js';
import type { ConsumerStats } from './consumer-stats.js';
import type { DatabaseRetryLoop, TransactionOutcome } from './database-retry-loop.js';
import type { RunResult } from './delivery-dispatcher.js';
import type { FailureRouter } from './failure-router.js';
import { parseDelivery } from './parse-delivery.js';
import { attemptOf, type ReceivedDelivery } from './received-delivery.js';
import type { ResolvedConsumer } from './resolve-consumer.js';
import { ack, handBackAtStop } from './settle-delivery.js';

export interface DeliveryProcessorOptions {
  readonly consumer: ResolvedConsumer;
  readonly logger: OutboxLogger;
  readonly stats: ConsumerStats;
  readonly transactions: DatabaseRetryLoop;
  readonly failures: FailureRouter;
  /** For the log line of a hand-back. */
  readonly databaseRetryLimitMs: number;
  /** Hands a delivery back now, unhandled (`handBack` of settle-delivery). */
  handBack(delivery: ReceivedDelivery): void;
}

/**
 * What one dispatcher run does with its deliveries: parses them (an unreadable one is
 * dead-lettered), runs them in one claim transaction, and settles each by the outcome. Acks
 * happen strictly after commit; a lost ack means a redelivery, which the processed-messages
 * table turns into a no-op.
 */
export class DeliveryProcessor {
  readonly #options: DeliveryProcessorOptions;

  constructor(options: DeliveryProcessorOptions) {
    this.#options = options;
  }

  async run(deliveries: ReceivedDelivery[]): Promise<RunResult> {
    const ready: ReceivedDelivery[] = [];
    for (const delivery of deliveries) {
      // A closed channel's deliveries come back from the broker.
      if (!delivery.handle.open) continue;
      if (!delivery.parsed) {
        const result = await parseDelivery(this.#options.consumer, delivery.message);
        if (!result.ok) {
          const { reason, error } = result.rejection;
          await this.#options.failures.deadLetter(delivery, reason, error, 0);
          continue;
        }
        delivery.parsed = result.delivery;
        delivery.refusedRetries = this.#options.failures.refusedRetries(
          result.delivery.businessKey,
        );
      }
      ready.push(delivery);
    }
    if (ready.length === 0) return undefined;
    if (ready.length === 1) return this.#runOne(ready[0]!);
    await this.#runBatch(ready);
    return undefined;
  }

  async #runOne(delivery: ReceivedDelivery): Promise<RunResult> {
    const { stats, failures } = this.#options;
    const outcome = await this.#transact([delivery]);
    switch (outcome.kind) {
      case 'committed':
        this.#count(outcome.handled);
        ack(delivery);
        return undefined;
      case 'aborted':
      case 'stopped':
        handBackAtStop([delivery], this.#options.consumer.ordered, stats);
        return undefined;
      case 'unavailable':
        this.#handBack(delivery);
        return undefined;
      case 'timed-out':
        stats.timeouts += 1;
        return failures.failed(delivery, outcome.error);
      case 'failed':
        return failures.failed(delivery, outcome.error);
    }
  }

  async #runBatch(deliveries: ReceivedDelivery[]): Promise<void> {
    const { stats, failures, logger, consumer } = this.#options;
    stats.batches += 1;
    const outcome = await this.#transact(deliveries);
    if (outcome.kind === 'committed') {
      this.#count(outcome.handled);
      for (const delivery of deliveries) ack(delivery);
      return;
    }
    if (outcome.kind === 'aborted' || outcome.kind === 'stopped') {
      handBackAtStop(deliveries, consumer.ordered, stats);
      return;
    }
    if (outcome.kind === 'unavailable') {
      // Batches are unordered: each delivery may go back on its own.
      for (const delivery of deliveries) this.#handBack(delivery);
      return;
    }
    // Everything rolled back. Doing the messages one by one retries only the failing one; a
    // time-out is charged to its message at once, which would only hold a slot that long again.
    let rest = deliveries;
    if (outcome.kind === 'timed-out') {
      stats.timeouts += 1;
      const late = deliveries[outcome.index]!;
      rest = deliveries.filter((delivery) => delivery !== late);
      // Batches are unordered, so this never asks for an in-place retry.
      await failures.failed(late, outcome.error);
    }
    stats.batchFallbacks += 1;
    logger.debug('batch rolled back; handling its messages one at a time', {
      consumer: consumer.name,
      size: deliveries.length,
      error: errorMessage(outcome.error),
    });
    for (const delivery of rest) {
      if (delivery.handle.open) await this.#runOne(delivery);
    }
  }

  #transact(deliveries: readonly ReceivedDelivery[]): Promise<TransactionOutcome> {
    const tasks = deliveries.map((delivery) => ({
      delivery: delivery.parsed!,
      attempt: attemptOf(delivery),
    }));
    // Waiting for the database is pointless once no delivery can be acked any more.
    return this.#options.transactions.run(tasks, () =>
      deliveries.some((delivery) => delivery.handle.open),
    );
  }

  /**
   * Gives a delivery that waited out `databaseRetryLimitMs` back to the broker, uncommitted and
   * unacked, without counting an attempt: the outage is not the message's fault. Another
   * process, whose database may be reachable, can take it; this one gets it again otherwise.
   */
  #handBack(delivery: ReceivedDelivery): void {
    const { stats, logger, consumer, databaseRetryLimitMs } = this.#options;
    stats.databaseRequeues += 1;
    logger.warn('database unavailable for too long; handing the delivery back', {
      consumer: consumer.name,
      messageId: delivery.parsed?.info.messageId,
      limitMs: databaseRetryLimitMs,
    });
    this.#options.handBack(delivery);
  }

  #count(handled: readonly boolean[]): void {
    const { stats } = this.#options;
    for (const ran of handled) {
      if (ran) stats.handled += 1;
      else stats.duplicates += 1;
    }
  }
}
