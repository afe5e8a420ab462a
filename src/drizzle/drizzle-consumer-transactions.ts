import type { IsolationLevel } from '../consumer/consumer-definition.js';
import { type ConsumerTransactions, refusal } from '../consumer/consumer-transactions.js';
import { type DrizzleTransactionLike, drizzleStatements } from './drizzle-transaction.js';

/** The part of a Drizzle node-postgres database (`drizzle(pool)`) a consumer host uses. */
export interface DrizzleDatabaseLike<T extends DrizzleTransactionLike> {
  transaction<R>(
    work: (tx: T) => Promise<R>,
    config: { isolationLevel: IsolationLevel },
  ): Promise<R>;
}

interface PgClientLike {
  query(...args: unknown[]): unknown;
}

/** Drizzle's session of one transaction, which holds the pg client it checked out. */
interface SessionLike {
  client?: PgClientLike;
}

/**
 * Makes the statements on `tx` fail with `closed()`'s error once it returns one, COMMIT and
 * ROLLBACK excepted, by putting a gate in front of the pg client of the transaction's session.
 * Drizzle itself does not refuse a `tx` whose transaction has ended: its statements would run
 * on a client back in the pool. Done only where the transaction has a session and client of its
 * own (a database on a pool), so the database's own client is never touched.
 */
function gateDrizzleTransaction(db: object, tx: object, closed: () => Error | undefined): void {
  const session = (tx as { session?: SessionLike }).session;
  const client = session?.client;
  if (!session || session === (db as { session?: unknown }).session) return;
  if (!client || typeof client.query !== 'function') return;
  session.client = new Proxy(client, {
    get(target, property) {
      if (property === 'query') {
        return (...args: unknown[]) => {
          const [statement] = args;
          const text =
            typeof statement === 'string' ? statement : (statement as { text?: unknown })?.text;
          const error = refusal(closed, text);
          if (error) return Promise.reject(error);
          return target.query(...args);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
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
  return {
    async run({ isolationLevel, closed }, work) {
      await db.transaction(
        (tx) => {
          gateDrizzleTransaction(db, tx, closed);
          return work({ tx, query: drizzleStatements(tx) });
        },
        { isolationLevel },
      );
    },
  };
}
