import { OutboxkitError } from '../errors/outboxkit-error.js';
import { thrownText } from '../util/thrown-text.js';

/**
 * A handler returned normally after a statement of its transaction had failed. Postgres aborts a
 * transaction at its first failed statement and answers the COMMIT with a ROLLBACK, not an
 * error: acked, the message would have had no effect at all. The attempt counts as failed, and
 * the message is retried like any failure.
 */
export class TransactionAbortedError extends OutboxkitError {
  constructor(consumer: string, swallowed?: { readonly error: unknown }) {
    super(
      'transaction-aborted',
      `A handler of consumer "${consumer}" returned normally after a statement of its ` +
        `transaction had failed${swallowed === undefined ? '' : ` (${thrownText(swallowed.error)})`}; ` +
        'Postgres had aborted the transaction, so nothing of it could commit, and the message is ' +
        'retried. Let the error propagate, or run a statement that may fail inside a savepoint ' +
        '(SAVEPOINT, then ROLLBACK TO SAVEPOINT on its failure).',
      swallowed === undefined ? undefined : { cause: swallowed.error },
    );
  }
}
