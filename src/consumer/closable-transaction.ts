import type { KyselyPlugin, Transaction } from 'kysely';

/**
 * A handler's view of its transaction, whose statements fail with `closed()`'s error once it
 * returns one. A timed-out handler may still run while its transaction is rolled back, and
 * Kysely checks that a transaction is open when a statement is called, not when the statement
 * reaches the connection: a statement called while the ROLLBACK waits would run after it,
 * outside any transaction, on a connection already back in the pool. The view refuses it the
 * moment the transaction is given up.
 */
export function closableTransaction<DB>(
  trx: Transaction<DB>,
  closed: () => Error | undefined,
): Transaction<DB> {
  const gate: KyselyPlugin = {
    transformQuery({ node }) {
      const error = closed();
      if (error) throw error;
      return node;
    },
    async transformResult({ result }) {
      return result;
    },
  };
  const view = trx.withPlugin(gate);
  // Kysely hands an already compiled query to the connection without any plugin seeing it.
  const executeQuery = view.executeQuery.bind(view);
  view.executeQuery = ((...args: Parameters<typeof executeQuery>) => {
    const error = closed();
    return error ? Promise.reject(error) : executeQuery(...args);
  }) as typeof view.executeQuery;
  return view;
}
