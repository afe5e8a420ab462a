import { NotInTransactionError, TRANSACTION_ENDED } from '../errors/not-in-transaction-error.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** How an ORM adapter runs a statement with positional (`$1`) parameters in its transaction. */
export type RunStatement = (text: string, params: unknown[]) => Promise<{ rows: unknown[] }>;

/**
 * What an ORM adapter hands the writer: a pg-like client of the ORM's transaction. The writer
 * asks `getTransactionStatus()` before every write, so a handle whose transaction has ended by
 * then is refused as well, not only one that never had a transaction.
 *
 * @param inTransaction whether the handle is inside an open transaction now.
 * @param fix the sentence of the `NotInTransactionError` that says what to pass instead.
 * @param ended whether the handle had a transaction that has ended, where the ORM tells.
 */
export function joinedTransaction(
  run: RunStatement,
  inTransaction: () => boolean,
  fix: string,
  ended: () => boolean = () => false,
): PgQueryable {
  const refusal = () => new NotInTransactionError(ended() ? TRANSACTION_ENDED : fix);
  if (!inTransaction()) throw refusal();
  return {
    query: (text, params = []) => {
      if (!inTransaction()) return Promise.reject(refusal());
      return run(text, params);
    },
    // 'T': in a transaction; 'I': idle, which the writer refuses (see transactionExecutor).
    getTransactionStatus: () => (inTransaction() ? 'T' : 'I'),
  };
}
