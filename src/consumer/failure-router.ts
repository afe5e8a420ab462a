import type { Options } from 'amqplib';
import { deadLetterHeaders, retryHeaders } from '../protocol/copy-headers.js';
import type { DeadLetterReason } from '../protocol/dead-letter-headers.js';
import { copyProperties } from '../protocol/message-properties.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import type { ConsumerStats } from './consumer-stats.js';
import { type ConsumerTopology, delayQueueName } from './consumer-topology.js';
import type { RunResult } from './delivery-dispatcher.js';
import type { LastFailure } from './last-failure.js';
import { messageInfo } from './parse-delivery.js';
import { isPermanentError } from './permanent-error.js';
import { attemptOf, type ReceivedDelivery } from './received-delivery.js';
import type { ResolvedConsumer } from './resolve-consumer.js';
import { ack } from './settle-delivery.js';

/** Puts a confirmed copy of a message into one of the consumer's own queues. */
export interface CopyPublisher {
  /** `whenMissing` runs when the broker returned the copy: `queue` does not exist. */
  publish(
    queue: string,
    content: Buffer,
    options: Options.Publish,
    whenMissing: () => Promise<void>,
  ): Promise<void>;
}

export interface FailureRouterOptions {
  readonly consumer: ResolvedConsumer;
  readonly topology: ConsumerTopology;
  readonly publisher: CopyPublisher;
  readonly logger: OutboxLogger;
  readonly stats: Pick<ConsumerStats, 'failures' | 'retried' | 'deadLettered' | 'requeued'>;
  /** Told of every failed handler attempt. */
  readonly lastFailure: LastFailure;
  /** Paces the requeue of a delivery whose copy the broker did not take. */
  readonly reconnectBackoff: BackoffPolicy;
  /**
   * Declares the consumer's topology again: one of its queues was deleted while it ran (an
   * operator's clean-up). The next copy then finds it.
   */
  readonly declareTopology: () => Promise<void>;
  readonly stopping: AbortSignal;
  /** Hands a delivery back now, unhandled (`handBack` of settle-delivery). */
  handBack(delivery: ReceivedDelivery): void;
}

/** Messages whose refused retries are remembered; the oldest is forgotten past this. */
const REFUSED_RETRIES_KEPT = 10_000;

/**
 * Decides where a failed delivery goes: retried later (in place for an ordered consumer,
 * through a delay queue otherwise), or to the dead-letter queue once it failed for good.
 */
export class FailureRouter {
  readonly #options: FailureRouterOptions;
  /**
   * Failed attempts whose retry copy the broker refused, by business key. The count travels in
   * the copy's headers; a message whose copy was refused comes back from its own queue without
   * it, and would be retried for ever.
   */
  readonly #refusedRetries = new Map<string, number>();

  constructor(options: FailureRouterOptions) {
    this.#options = options;
  }

  /**
   * Routes a delivery whose handler attempt failed (its transaction rolled back). Returns a
   * retry delay when an ordered consumer retries it in place, keeping it unacked.
   */
  async failed(delivery: ReceivedDelivery, error: unknown): Promise<RunResult> {
    const { consumer, topology, logger, stats } = this.#options;
    stats.failures += 1;
    const attempts = attemptOf(delivery);
    const at = new Date();
    delivery.firstFailedAt ??= at;
    const permanent = isPermanentError(error);
    const givenUp = permanent || attempts >= consumer.maxAttempts;
    this.#options.lastFailure.record({
      at,
      attempt: attempts,
      messageId: delivery.parsed?.info.messageId,
      businessKey: delivery.parsed?.businessKey,
      error,
      next: givenUp ? 'dead-letter' : 'retry',
    });
    if (givenUp) {
      await this.deadLetter(
        delivery,
        permanent ? 'permanent-error' : 'retries-exhausted',
        error,
        attempts,
      );
      return undefined;
    }
    const delayMs = consumer.retryDelaysMs[attempts - 1]!;
    logger.warn('handler failed; retrying later', {
      consumer: consumer.name,
      messageId: delivery.parsed?.info.messageId,
      // What an operator looks the message up by: the order, not the message id.
      businessKey: delivery.parsed?.businessKey,
      attempt: attempts,
      retryInMs: delayMs,
      error: errorMessage(error),
      // Where a handler's bug is: the message alone does not say (a first-hour probe).
      stack: stackOf(error),
    });
    if (consumer.ordered) {
      // Retried in place: the delivery stays unacked and its key holds back later messages.
      delivery.inPlaceFailures += 1;
      stats.retried += 1;
      return { retryAfterMs: delayMs };
    }
    const info = delivery.parsed!.info;
    const headers = retryHeaders(info.headers, attempts, {
      error,
      at,
      exchange: info.exchange,
      routingKey: info.routingKey,
    });
    if (await this.#forward(delivery, delayQueueName(topology.queue.name, delayMs), headers)) {
      stats.retried += 1;
      this.#refusedRetries.delete(delivery.parsed!.businessKey);
    } else {
      this.#rememberRefused(delivery.parsed!.businessKey, delivery.refusedRetries + 1);
    }
    return undefined;
  }

  /** Failed attempts of this message whose retry copy the broker refused, as far as known here. */
  refusedRetries(businessKey: string): number {
    return this.#refusedRetries.get(businessKey) ?? 0;
  }

  #rememberRefused(key: string, count: number): void {
    this.#refusedRetries.delete(key);
    this.#refusedRetries.set(key, count);
    if (this.#refusedRetries.size > REFUSED_RETRIES_KEPT) {
      this.#refusedRetries.delete(this.#refusedRetries.keys().next().value!);
    }
  }

  /** Moves a delivery to the dead-letter queue, with why and after how many attempts. */
  async deadLetter(
    delivery: ReceivedDelivery,
    reason: DeadLetterReason,
    error: unknown,
    attempts: number,
  ): Promise<void> {
    const { consumer, topology, logger, stats } = this.#options;
    const info = delivery.parsed?.info ?? messageInfo(delivery.message, 0);
    const headers = deadLetterHeaders(info.headers, reason, consumer.name, attempts, {
      error,
      at: new Date(),
      ...(delivery.firstFailedAt && { firstAt: delivery.firstFailedAt }),
      exchange: info.exchange,
      routingKey: info.routingKey,
      queue: topology.queue.name,
    });
    if (await this.#forward(delivery, topology.deadLetterQueue.name, headers)) {
      stats.deadLettered += 1;
      if (delivery.parsed) this.#refusedRetries.delete(delivery.parsed.businessKey);
      // Once the copy is in: a refused copy is requeued instead, and says so.
      logger.warn('message dead-lettered', {
        consumer: consumer.name,
        messageId: info.messageId,
        businessKey: delivery.parsed?.businessKey,
        reason,
        attempts,
        error: errorMessage(error),
        stack: stackOf(error),
      });
    }
  }

  /**
   * Moves a delivery to another of the consumer's queues: the copy first, confirmed, then the
   * ack. When the copy fails the delivery is requeued after a pause, so a broker refusing
   * copies cannot cause a tight redelivery loop (an ordered consumer's in queue order).
   */
  async #forward(
    delivery: ReceivedDelivery,
    queue: string,
    headers: Record<string, unknown>,
  ): Promise<boolean> {
    const { publisher, logger, reconnectBackoff, stopping, consumer } = this.#options;
    const { message } = delivery;
    try {
      await publisher.publish(queue, message.content, copyProperties(message, headers), () =>
        this.#declareMissing(queue),
      );
    } catch (error) {
      logger.warn('could not move a message; requeueing it', {
        consumer: consumer.name,
        queue,
        error: errorMessage(error),
      });
      await abortableDelay(backoffDelay(reconnectBackoff, 4), stopping);
      this.#options.handBack(delivery);
      return false;
    }
    ack(delivery);
    return true;
  }

  async #declareMissing(queue: string): Promise<void> {
    const { consumer, logger, declareTopology } = this.#options;
    logger.warn('a queue of the consumer is missing; declaring it again', {
      consumer: consumer.name,
      queue,
    });
    await declareTopology().catch((error: unknown) =>
      logger.warn('could not declare the queue again', {
        consumer: consumer.name,
        queue,
        error: errorMessage(error),
      }),
    );
  }
}

/** The stack of what a handler threw, when it is an Error with one. */
function stackOf(error: unknown): string | undefined {
  return error instanceof Error && typeof error.stack === 'string' ? error.stack : undefined;
}
