import type { RunStatement } from '../orm/joined-transaction.js';
import { sqlStateOf } from './database-errors.js';
import { TransactionAbortedError } from './transaction-aborted-error.js';

/** The statement that asks; the ORM adapters' gates let it through once the handlers are done. */
export const ABORTED_CHECK = 'SELECT 1 AS outboxkit_aborted_check';

/** SQLSTATE in_failed_sql_transaction: every statement after the first failed one gets it. */
const IN_FAILED_TRANSACTION = '25P02';

/**
 * The error for a transaction that a failed statement aborted, or `undefined` when it can still
 * commit (its failed statement was rolled back to a savepoint). Postgres answers the COMMIT of
 * an aborted transaction with ROLLBACK, not an error, so it is asked before: a statement that
 * fails with 25P02 is the only sign. Rejects when the statement fails for another reason.
 */
export async function abortedTransaction(
  run: RunStatement,
  consumer: string,
  swallowed: { readonly error: unknown } | undefined,
): Promise<TransactionAbortedError | undefined> {
  try {
    await run(ABORTED_CHECK, []);
    return undefined;
  } catch (error) {
    if (sqlStateOf(error) === IN_FAILED_TRANSACTION) {
      return new TransactionAbortedError(consumer, swallowed);
    }
    throw error;
  }
}
