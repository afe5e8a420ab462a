import { OutboxkitError } from '../errors/outboxkit-error.js';

/** A test helper waited longer than its `timeoutMs` for a condition; the message says which. */
export class TestingTimeoutError extends OutboxkitError {
  constructor(what: string, timeoutMs: number, detail?: string, cause?: unknown) {
    super(
      'testing-timeout',
      `Timed out after ${timeoutMs} ms waiting for ${what}${detail ? ` (${detail})` : ''}`,
      { cause },
    );
  }
}
