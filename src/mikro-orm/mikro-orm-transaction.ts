import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import { joinKnexTransaction, type KnexTransactionLike } from '../knex/knex-transaction.js';
import { requireTransactionHandle } from '../orm/handle-shape.js';
import { joinedTransaction } from '../orm/joined-transaction.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import {
  isKnexContext,
  isKyselyContext,
  kyselyContextEnded,
  kyselyContextStatements,
} from './mikro-orm-context.js';

/** The part of a MikroORM `EntityManager` (6 or 7) the writer uses. */
export interface MikroOrmEntityManagerLike {
  isInTransaction(): boolean;
  getTransactionContext<T>(): T | undefined;
}

const FIX =
  'pass the `EntityManager` that `em.transactional(em => ...)` gives, or one after ' +
  '`em.begin()`; outside a transaction every statement commits on its own.';

/**
 * The caller's MikroORM transaction, for `writer.add`: `@mikro-orm/postgresql` 6, whose
 * transactions are Knex transactions, or 7, whose are Kysely ones. Throws a
 * `NotInTransactionError` for an `EntityManager` outside a transaction, or one whose transaction
 * has ended.
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
  requireTransactionHandle(
    em,
    ['isInTransaction', 'getTransactionContext'],
    isMikroOrm(em) ? `the MikroORM instance is not one: ${FIX}` : FIX,
  );
  const context = em.isInTransaction() ? em.getTransactionContext<unknown>() : undefined;
  if (isKyselyContext(context)) {
    // Kysely refuses a statement on its ended transaction too, but only from the one object
    // that ended: this says so before anything is sent, in outboxkit's words.
    return joinedTransaction(
      kyselyContextStatements(context),
      () => !kyselyContextEnded(context),
      FIX,
      () => kyselyContextEnded(context),
    );
  }
  if (isKnexContext(context)) return joinKnexTransaction(context as KnexTransactionLike, FIX);
  throw new NotInTransactionError(FIX);
}

/** The `MikroORM` instance (what `MikroORM.init` gives), taken for its `em` by mistake. */
export function isMikroOrm(value: unknown): boolean {
  return (
    value !== null &&
    typeof value === 'object' &&
    'em' in value &&
    typeof (value as { em: { fork?: unknown } }).em?.fork === 'function'
  );
}
