import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** The part of `@nestjs-cls/transactional`'s `TransactionHost` the writer uses. */
export interface TransactionHostLike<Tx> {
  readonly tx: Tx;
  isTransactionActive(): boolean;
}

const FIX =
  'call it inside a method decorated with `@Transactional()`, or inside ' +
  '`txHost.withTransaction(...)`; outside one, `txHost.tx` commits every statement on its own.';

/**
 * The ambient transaction of `@nestjs-cls/transactional`, for `writer.add`: `join` is the
 * outboxkit adapter of the ORM that the CLS adapter carries (`typeormTransaction` for
 * `TransactionalAdapterTypeOrm`, `prismaTransaction` for `TransactionalAdapterPrisma`, ...).
 * Throws a `NotInTransactionError` when no transaction is active.
 *
 * @example
 * \@Transactional()
 * async placeOrder(order: Order) {
 *   await this.txHost.tx.save(Order, order);
 *   await this.writer.add(clsTransaction(this.txHost, typeormTransaction), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * }
 */
export function clsTransaction<Tx>(
  host: TransactionHostLike<Tx>,
  join: (tx: Tx) => PgQueryable,
): PgQueryable {
  if (!host.isTransactionActive()) throw new NotInTransactionError(FIX);
  return join(host.tx);
}
