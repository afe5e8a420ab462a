import { type SQL, sql } from 'drizzle-orm';
import { withHandleGate } from '../consumer/consumer-transactions.js';
import { requireTransactionHandle } from '../orm/handle-shape.js';
import { joinedTransaction } from '../orm/joined-transaction.js';
import { splitPositional } from '../orm/positional-statement.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { gateDrizzleSession } from './gate-drizzle-session.js';

/** The part of a Drizzle node-postgres transaction (`tx`) the writer uses. */
export interface DrizzleTransactionLike {
  execute(query: SQL): PromiseLike<{ rows: unknown[] }>;
  /** Only a transaction has it: the database object `drizzle(pool)` commits on its own. */
  rollback(): unknown;
}

const FIX =
  'pass the `tx` that `db.transaction(tx => ...)` gives; the `db` of `drizzle(...)` commits ' +
  'every statement on its own.';

function joinDrizzleTransaction(tx: DrizzleTransactionLike): PgQueryable {
  requireTransactionHandle(tx, ['execute'], FIX);
  const inTransaction = typeof (tx as { rollback?: unknown }).rollback === 'function';
  return joinedTransaction(drizzleStatements(tx), () => inTransaction, FIX);
}

/**
 * The caller's Drizzle transaction (node-postgres driver), for `writer.add`. Throws a
 * `NotInTransactionError` for the database object itself.
 *
 * Drizzle does not tell when a transaction has ended: keep the `tx` inside its callback.
 *
 * It carries the gate of its handles, so that `clsConsumerTransactions(txHost,
 * drizzleTransaction)` refuses a timed-out handler's late statements on `txHost.tx`.
 *
 * @example
 * await db.transaction(async (tx) => {
 *   await tx.insert(orders).values(order);
 *   await writer.add(drizzleTransaction(tx), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export const drizzleTransaction: (tx: DrizzleTransactionLike) => PgQueryable = withHandleGate(
  joinDrizzleTransaction,
  gateDrizzleSession,
);

/** Runs a statement with positional (`$1`) parameters through Drizzle's `execute`. */
export function drizzleStatements(
  tx: Pick<DrizzleTransactionLike, 'execute'>,
): (text: string, params: unknown[]) => Promise<{ rows: unknown[] }> {
  return async (text, params) => {
    const { texts, values } = splitPositional(text, params);
    const statement = sql.join(
      texts.flatMap((part, i) =>
        i < values.length ? [sql.raw(part), sql.param(values[i])] : [sql.raw(part)],
      ),
    );
    const result = await tx.execute(statement);
    return { rows: result.rows };
  };
}
