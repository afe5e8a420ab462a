import type { IsolationLevel } from '../consumer/consumer-definition.js';
import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { requireOrmArgument } from '../orm/handle-shape.js';
import { type DrizzleTransactionLike, drizzleStatements } from './drizzle-transaction.js';
import { gateDrizzleSession } from './gate-drizzle-session.js';

/** The part of a Drizzle node-postgres database (`drizzle(pool)`) a consumer host uses. */
export interface DrizzleDatabaseLike<T extends DrizzleTransactionLike> {
  transaction<R>(
    work: (tx: T) => Promise<R>,
    config: { isolationLevel: IsolationLevel },
  ): Promise<R>;
}

/**
 * Opens each consumer transaction as a Drizzle transaction (node-postgres driver, on a pool):
 * the handler gets its `tx` as `context.tx`, and its writes commit with the dedupe row. Pass it
 * as the consumer host's `transactions` option (or the Nest module's).
 *
 * Once the host gives the transaction up (the handler timed out or threw, or it commits), the
 * handler's further statements on `tx` fail instead of running after the ROLLBACK or COMMIT.
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, transactions: drizzleConsumerTransactions(orm), consumers: [
 *   defineConsumer<OrderPlaced, unknown, DrizzleTx>({ ..., async handler(order, { tx }) { await tx.insert(invoices).values({ orderId: order.id }); } }),
 * ] });
 */
export function drizzleConsumerTransactions<T extends DrizzleTransactionLike>(
  db: DrizzleDatabaseLike<T>,
): ConsumerTransactions<T> {
  const expected = 'the `db` of `drizzle(pool)`';
  requireOrmArgument('drizzleConsumerTransactions', db, ['transaction'], expected);
  if (typeof (db as { rollback?: unknown }).rollback === 'function') {
    throw new ConfigurationError(
      'transactions',
      `drizzleConsumerTransactions takes ${expected}, not a transaction's \`tx\`: each message gets a transaction of its own`,
    );
  }
  if (isSingleClient((db as { $client?: unknown }).$client)) {
    throw new ConfigurationError(
      'transactions',
      'drizzleConsumerTransactions needs Drizzle on a pg Pool (drizzle(pool)): on one pg.Client, ' +
        "the consumer's concurrent transactions, and the application's own statements, would " +
        "share one session, so a failed handler's writes could commit with another's",
    );
  }
  return {
    async run({ isolationLevel, closed }, work) {
      await db.transaction(
        (tx) => {
          // Only a session of the transaction's own (a database on a pool), whose gate stays: on
          // a single client the session is the database's, which the application's other
          // statements and concurrent transactions go through too.
          if (sessionOf(tx) !== sessionOf(db)) gateDrizzleSession(tx, closed);
          return work({ tx, query: drizzleStatements(tx) });
        },
        { isolationLevel },
      );
    },
  };
}

/** A node-postgres `Client` (a `Pool` counts its clients; other drivers are not checked). */
function isSingleClient(client: unknown): boolean {
  if (client === null || typeof client !== 'object') return false;
  const c = client as { query?: unknown; connect?: unknown; totalCount?: unknown };
  return (
    typeof c.query === 'function' &&
    typeof c.connect === 'function' &&
    typeof c.totalCount !== 'number'
  );
}

function sessionOf(handle: object): unknown {
  return (handle as { session?: unknown }).session;
}
