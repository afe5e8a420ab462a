import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import { type KnexTransactionLike, knexTransaction } from '../knex/knex-transaction.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** The part of a MikroORM `EntityManager` the writer uses. */
export interface MikroOrmEntityManagerLike {
  isInTransaction(): boolean;
  getTransactionContext<T>(): T | undefined;
}

const FIX =
  'pass the `EntityManager` that `em.transactional(em => ...)` gives, or one after ' +
  '`em.begin()`; outside a transaction every statement commits on its own.';

/**
 * The caller's MikroORM transaction (`@mikro-orm/postgresql` 6, whose transactions are Knex
 * transactions), for `writer.add`. Throws a `NotInTransactionError` for an `EntityManager`
 * outside a transaction.
 *
 * The outbox row is written at once, while the entities are written at `flush()`, which
 * `transactional()` does before it commits: both commit or roll back together.
 *
 * @example
 * await orm.em.transactional(async (em) => {
 *   em.persist(order);
 *   await writer.add(mikroOrmTransaction(em), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export function mikroOrmTransaction(em: MikroOrmEntityManagerLike): PgQueryable {
  const trx = em.isInTransaction() ? em.getTransactionContext<KnexTransactionLike>() : undefined;
  if (trx === undefined || typeof trx.raw !== 'function') throw new NotInTransactionError(FIX);
  return knexTransaction(trx, FIX);
}
