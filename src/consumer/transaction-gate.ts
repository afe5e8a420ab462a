import { TransactionClosedError } from './transaction-closed-error.js';

/**
 * Whether a handler's transaction still takes statements, and the error that refuses them once
 * it does not. The error of a transaction that merely ended is made when a late statement asks
 * for it: nearly every transaction ends without one, and an error's stack trace costs more than
 * the rest of a message's bookkeeping.
 */
export class TransactionGate {
  readonly #consumer: string;
  #closed = false;
  #error: Error | undefined;

  constructor(consumer: string) {
    this.#consumer = consumer;
  }

  /** Undefined while the transaction takes statements; the error to refuse them with after. */
  get error(): Error | undefined {
    if (this.#closed && this.#error === undefined) {
      this.#error = new TransactionClosedError(this.#consumer);
    }
    return this.#error;
  }

  /** The transaction ended (committing, or rolled back after a handler's error). */
  close(): void {
    this.#closed = true;
  }

  /** The transaction was given up for `error` (a time-out), which late statements get. */
  closeWith(error: Error): void {
    this.#closed = true;
    this.#error ??= error;
  }
}
