/** A statement that begins, ends or hands over a session's transaction. */
export interface TransactionControl {
  /** Its leading keyword(s), upper case: `COMMIT`, `START TRANSACTION`, ... */
  readonly keyword: string;
  /** It begins a transaction (`BEGIN`, `START TRANSACTION`); else it ends one. */
  readonly begins: boolean;
}

// `ROLLBACK TO [SAVEPOINT]` keeps the transaction; `ROLLBACK PREPARED` ends another one.
const TRANSACTION_CONTROL =
  /^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ABORT|PREPARE\s+TRANSACTION|ROLLBACK(?!\s+TO\b)(?!\s+PREPARED\b))\b/i;

/** What `sql` does to the session's transaction, or undefined when it leaves it as it is. */
export function transactionControl(sql: string): TransactionControl | undefined {
  const match = TRANSACTION_CONTROL.exec(sql);
  if (!match) return undefined;
  const keyword = match[1]!.toUpperCase();
  return { keyword, begins: keyword === 'BEGIN' || keyword.startsWith('START') };
}
