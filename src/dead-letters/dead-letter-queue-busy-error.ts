import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * Another reader kept a dead-letter queue for longer than `busyTimeoutMs`. A read takes the
 * messages it looks at without acking them, which hides them from every other reader until it
 * hands them back, so readers take turns; one that could not get its turn fails with this
 * instead of answering from part of the queue.
 */
export class DeadLetterQueueBusyError extends OutboxkitError {
  /** The dead-letter queue. */
  readonly queue: string;
  /** How long the turn was waited for. */
  readonly waitedMs: number;

  constructor(queue: string, waitedMs: number, cause?: unknown) {
    super(
      'dead-letter-queue-busy',
      `Dead-letter queue ${JSON.stringify(queue)} was being read by another reader (a dashboard, ` +
        `a CLI, a replay or purge, in this process or another) for ${waitedMs} ms: nothing was ` +
        'read or changed. Try again, or raise busyTimeoutMs (CLI: --busy-timeout). A consumer of ' +
        'your own on the ' +
        'queue keeps it busy for good.',
      cause === undefined ? undefined : { cause },
    );
    this.queue = queue;
    this.waitedMs = waitedMs;
  }
}
