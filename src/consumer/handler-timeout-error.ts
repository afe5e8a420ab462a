import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * An attempt ran past its consumer's `timeoutMs`: the handler did not settle in time, or the
 * claim waited that long for a business key another transaction holds (`businessKey` is then
 * set). The transaction was rolled back at once, whether the handler settled or not, so nothing
 * it did commits; the attempt counts, and the message is retried like any failure.
 */
export class HandlerTimeoutError extends OutboxkitError {
  readonly timeoutMs: number;
  /** The key (of a batch, the keys) the claim waited for, when the handler was never called. */
  readonly businessKey: string | undefined;

  constructor(consumer: string, timeoutMs: number, businessKey?: string) {
    super(
      'handler-timeout',
      businessKey === undefined
        ? `The handler of consumer "${consumer}" ran longer than ${timeoutMs} ms (option ` +
            'timeoutMs); its transaction was rolled back. Make it faster, or raise timeoutMs ' +
            "(below the broker's consumer_timeout)."
        : `A message of consumer "${consumer}" waited longer than ${timeoutMs} ms (option ` +
            `timeoutMs) for a business key another transaction holds (${businessKey}); it is ` +
            'retried later. A handler of the same key is slow or stuck.',
    );
    this.timeoutMs = timeoutMs;
    this.businessKey = businessKey;
  }
}
