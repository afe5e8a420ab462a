import { withHandleGate } from '../consumer/consumer-transactions.js';
import { requireTransactionHandle } from '../orm/handle-shape.js';
import { joinedTransaction } from '../orm/joined-transaction.js';
import { splitPositional } from '../orm/positional-statement.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { gateKnexTransaction, type KnexGatedTransactionLike } from './gate-knex-transaction.js';

/** The part of a Knex transaction (`trx`) the writer uses. */
export interface KnexTransactionLike {
  /** `true` on a transaction; the `knex` instance itself has no such flag. */
  readonly isTransaction?: boolean | undefined;
  /** Only a transaction has it. */
  isCompleted?(): boolean;
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<{ rows: unknown[] }>;
}

const FIX =
  'pass the `trx` that `knex.transaction(trx => ...)` gives; the `knex` instance commits every ' +
  'statement on its own.';

/** `knexTransaction` without its gate; `fix` is what its refusal tells to do instead. */
export function joinKnexTransaction(trx: KnexTransactionLike, fix: string = FIX): PgQueryable {
  requireTransactionHandle(trx, ['raw'], fix);
  return joinedTransaction(
    knexStatements(trx),
    () => trx.isTransaction === true && trx.isCompleted?.() === false,
    fix,
    () => trx.isTransaction === true && trx.isCompleted?.() === true,
  );
}

/**
 * The caller's Knex transaction (pg client), for `writer.add`. Throws a `NotInTransactionError`
 * for the `knex` instance itself or a transaction that has completed.
 *
 * It carries the gate of its handles, so that `clsConsumerTransactions(txHost, knexTransaction)`
 * refuses a timed-out handler's late statements on `txHost.tx`.
 *
 * @example
 * await knex.transaction(async (trx) => {
 *   await trx('orders').insert(order);
 *   await writer.add(knexTransaction(trx), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export const knexTransaction: (trx: KnexTransactionLike) => PgQueryable = withHandleGate(
  joinKnexTransaction,
  (trx: KnexGatedTransactionLike, closed: () => Error | undefined) => {
    gateKnexTransaction(trx, closed);
    return undefined;
  },
);

/** Runs a statement with positional (`$1`) parameters through Knex's `raw`. */
export function knexStatements(
  trx: Pick<KnexTransactionLike, 'raw'>,
): (text: string, params: unknown[]) => Promise<{ rows: unknown[] }> {
  return async (text, params) => {
    const { texts, values } = splitPositional(text, params);
    // Knex binds `?`; a literal one (the jsonb operator) is written `\?`.
    const raw = texts.map((part) => part.replaceAll('?', '\\?')).join('?');
    const result = await trx.raw(raw, values);
    return { rows: result.rows };
  };
}
