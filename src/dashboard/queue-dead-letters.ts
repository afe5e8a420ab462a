import { clearTimeout, setTimeout } from 'node:timers';
import type { AmqpUrls } from '../amqp/amqp-urls.js';
import { DeadLetterQueue } from '../dead-letters/dead-letter-queue.js';
import type { DeadLetterWorkResult } from '../dead-letters/replay-result.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import type { TlsOptions } from '../options/tls-options.js';
import { settleWithin } from '../util/with-timeout.js';
import { type QueuedDeadLetterView, queuedDeadLetterView } from './dashboard-views.js';

/** What the page shows of one consumer's dead-letter queue. */
export interface QueueDeadLettersView {
  /** The consumer's queue. */
  readonly queue: string;
  /** Its dead-letter queue, `<queue>.dlq`. */
  readonly deadLetterQueue: string;
  /** Messages in the dead-letter queue, by the broker's count. */
  readonly depth: number;
  /** The first of them (at most the list limit), without payloads or headers. */
  readonly messages: readonly QueuedDeadLetterView[];
}

/**
 * One consumer's dead-letter queue as the dashboard uses it. Reading a dead letter takes it
 * unacked and hands it back; the dead-letter queue is a classic queue, which counts no
 * deliveries, so that leaves it as it was (`DeadLetterQueue` refuses to read one that is not).
 * The messages are still read again only when the depth changed or after a replay or purge,
 * never on a timer: an open page should not hold a broker busy. Operations on the queue run one
 * at a time, since a message one scan holds is invisible to another, which would then miss it.
 *
 * A broker or queue that stops answering must not hold the page, or every later operation
 * queued behind it: a view gets `answerTimeoutMs`, after which its connection is dropped (the
 * broker hands back what it held) and the next operation connects afresh. Replays and purges
 * are not cut short, since they may rightly take long; `close()` waits for them as long.
 */
export class QueueDeadLetters {
  readonly #dlq: DeadLetterQueue;
  readonly #limit: number;
  readonly #answerTimeoutMs: number;
  #tail: Promise<unknown> = Promise.resolve();
  #cached: { depth: number; messages: QueuedDeadLetterView[] } | undefined;

  constructor(
    amqpUrl: AmqpUrls,
    queue: string,
    limit: number,
    answerTimeoutMs = 10_000,
    amqpTls?: TlsOptions,
  ) {
    this.#dlq = new DeadLetterQueue({ amqpUrl, queue, ...(amqpTls && { amqpTls }) });
    this.#limit = limit;
    this.#answerTimeoutMs = answerTimeoutMs;
  }

  /** The consumer's queue. */
  get queue(): string {
    return this.#dlq.queue;
  }

  /** The depth now, and the messages read when the depth was last different. */
  view(): Promise<QueueDeadLettersView> {
    return this.#serial(() => this.#answered(() => this.#read()));
  }

  async #read(): Promise<QueueDeadLettersView> {
    const depth = await this.#dlq.depth();
    const c = this.#cached;
    const fresh = c && c.depth === depth;
    if (!fresh) {
      const messages =
        depth === 0
          ? []
          : (await this.#dlq.list({}, { limit: this.#limit })).map(queuedDeadLetterView);
      this.#cached = { depth, messages };
    }
    return {
      queue: this.#dlq.queue,
      deadLetterQueue: this.#dlq.name,
      depth,
      messages: this.#cached!.messages,
    };
  }

  /** `work`, or a typed error once the broker kept silent for `answerTimeoutMs`. */
  async #answered<T>(work: () => Promise<T>): Promise<T> {
    const running = work();
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<'silent'>((resolve) => {
      timer = setTimeout(() => resolve('silent'), this.#answerTimeoutMs);
    });
    try {
      const first = await Promise.race([running, silent]);
      if (first !== 'silent') return first;
    } finally {
      clearTimeout(timer);
    }
    // Dropping the connection fails the operation's pending calls, so the chain moves on.
    await this.#dlq.close();
    await settleWithin(running, this.#answerTimeoutMs);
    this.#cached = undefined;
    throw new OutboxkitError(
      'rabbitmq-no-answer',
      `RabbitMQ did not answer about ${this.#dlq.name} within ${this.#answerTimeoutMs} ms`,
    );
  }

  /** Replays the first dead letter with this message id to the consumer's queue. */
  replayOne(messageId: string): Promise<void> {
    return this.#changing(() => this.#dlq.replayOne(messageId));
  }

  /** Replays every dead letter to the consumer's queue. */
  replayAll(): Promise<DeadLetterWorkResult> {
    return this.#changing(() => this.#dlq.replay({}));
  }

  /** Removes the first dead letter with this message id for good. */
  purgeOne(messageId: string): Promise<void> {
    return this.#changing(() => this.#dlq.purgeOne(messageId));
  }

  /** Removes every dead letter of the queue for good. */
  purgeAll(): Promise<DeadLetterWorkResult> {
    return this.#changing(() => this.#dlq.purge({}));
  }

  /** Closes the broker connection, after the operation under way. */
  close(): Promise<void> {
    return this.#serial(() => this.#dlq.close());
  }

  #changing<T>(work: () => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      this.#cached = undefined;
      return work();
    });
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(() => work());
    this.#tail = run.catch(() => {});
    return run;
  }
}
