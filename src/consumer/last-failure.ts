/** A consumer's last failed handler attempt: what `ConsumerHost.lastFailure` returns. */
export interface HandlerFailure {
  readonly at: Date;
  /** The attempt that failed, from 1. */
  readonly attempt: number;
  readonly messageId: string | undefined;
  readonly businessKey: string | undefined;
  /** What the handler threw; a `HandlerTimeoutError` when it ran out of time. */
  readonly error: unknown;
  /** What became of the message: tried again later, or moved to the dead-letter queue. */
  readonly next: 'retry' | 'dead-letter';
}

/**
 * Keeps a consumer's last handler failure, shared by the runners of its partitions. Counts say
 * that handlers fail; this says why, for a test's time-out or an operator's look.
 */
export class LastFailure {
  #failure: HandlerFailure | undefined;

  get value(): HandlerFailure | undefined {
    return this.#failure;
  }

  record(failure: HandlerFailure): void {
    // V8 keeps an error's call sites, and through them its functions' scopes (the delivery
    // among them), until its stack is first read: read once, only the text is kept.
    if (failure.error instanceof Error) void failure.error.stack;
    this.#failure = Object.freeze(failure);
  }
}
