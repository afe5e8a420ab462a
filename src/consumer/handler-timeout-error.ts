import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * A handler ran past its consumer's `timeoutMs`. Its transaction was ended by terminating the
 * database session, so nothing it did commits; the message is retried like any failure.
 */
export class HandlerTimeoutError extends OutboxkitError {
  readonly timeoutMs: number;

  constructor(consumer: string, timeoutMs: number) {
    super(
      'handler-timeout',
      `The handler of consumer "${consumer}" ran longer than ${timeoutMs} ms (option timeoutMs); ` +
        'its transaction was rolled back. Make it faster, or raise timeoutMs (below the ' +
        "broker's consumer_timeout).",
    );
    this.timeoutMs = timeoutMs;
  }
}
