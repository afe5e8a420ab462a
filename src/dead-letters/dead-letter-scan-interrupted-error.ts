import { OutboxkitError } from '../errors/outboxkit-error.js';
import { errorMessage } from '../util/logger.js';

/**
 * RabbitMQ closed the channel or the connection while a dead-letter queue was being read (a
 * broker restart, a lost link). What the read had not handled is still in the queue, handed
 * back by the close: running it again goes on from there. For a replay or purge, `done` and
 * `failed` say how far it got.
 */
export class DeadLetterScanInterruptedError extends OutboxkitError {
  /** The dead-letter queue. */
  readonly queue: string;
  /** Dead letters replayed or removed before the interruption. */
  readonly done: number;
  /** Dead letters whose replay failed before the interruption; they stay in the queue. */
  readonly failed: number;

  constructor(
    queue: string,
    cause: unknown,
    progress?: { done: number; failed: number; verb: string },
  ) {
    const got = progress
      ? ` after ${progress.done} ${progress.verb}${progress.failed > 0 ? ` and ${progress.failed} failed` : ''}`
      : '';
    super(
      'dead-letter-scan-interrupted',
      `Reading dead-letter queue ${JSON.stringify(queue)} stopped${got}: RabbitMQ closed the ` +
        `channel or connection (${errorMessage(cause)}). The rest are still in the queue: run it ` +
        'again once RabbitMQ answers (a dead letter replayed just before the close may be ' +
        'delivered twice, which the consumer deduplicates).',
      { cause },
    );
    this.queue = queue;
    this.done = progress?.done ?? 0;
    this.failed = progress?.failed ?? 0;
  }
}
