import { refusal } from '../consumer/consumer-transactions.js';

/** The part of a Knex transaction the gate uses. */
export interface KnexGatedTransactionLike {
  /** Knex's client of this transaction alone, through which every statement of it goes. */
  readonly client: object;
}

/**
 * Makes the handler's statements on `trx` fail with `closed()`'s error once it returns one,
 * COMMIT and ROLLBACK excepted. Knex refuses them itself only from its COMMIT or ROLLBACK on;
 * this closes the transaction to the handler from the moment the host gives it up.
 */
export function gateKnexTransaction(
  trx: KnexGatedTransactionLike,
  closed: () => Error | undefined,
): void {
  const client = trx.client as { query(connection: unknown, query: unknown): Promise<unknown> };
  const query = client.query;
  client.query = function gated(connection, statement) {
    const sql =
      typeof statement === 'string' ? statement : (statement as { sql?: unknown } | null)?.sql;
    const error = refusal(closed, sql);
    if (error) return Promise.reject(error);
    return query.call(this, connection, statement);
  };
}
