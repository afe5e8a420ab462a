import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A dead-letter queue is not a classic queue (earlier outboxkit versions declared it like the
 * consumer's queue, often a quorum queue), so reading it would count as a delivery of each
 * message read, and RabbitMQ 4 drops a quorum-queue message after 20 of them. Reading is refused;
 * replay and purge still work.
 */
export class DeadLetterQueueWearsOutError extends OutboxkitError {
  /** The dead-letter queue. */
  readonly queue: string;

  constructor(queue: string, cause: unknown) {
    super(
      'dead-letter-queue-wears-out',
      `Dead-letter queue ${JSON.stringify(queue)} is not a classic queue, so reading it would ` +
        'count as a delivery of every message read (RabbitMQ 4 drops a quorum-queue message ' +
        'after 20). Replay and purge still work. To read it, move its messages out, delete it, ' +
        'restart the consumer so it declares a classic one, and move them back: see "Upgrading ' +
        'a dead-letter queue" in docs/operations.md.',
      { cause },
    );
    this.queue = queue;
  }
}
