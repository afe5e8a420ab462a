import { joinedTransaction } from '../orm/joined-transaction.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** The part of a Prisma interactive transaction client (`tx`) the writer uses. */
export interface PrismaTransactionLike {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): PromiseLike<T>;
}

const FIX =
  'pass the `tx` that `prisma.$transaction(async tx => ...)` gives; the `PrismaClient` itself ' +
  'commits every statement on its own, and the array form of `$transaction` has no handle.';

/**
 * The caller's Prisma interactive transaction, for `writer.add`. Throws a
 * `NotInTransactionError` for the `PrismaClient` itself. Prisma ends a transaction's client when
 * the transaction ends: a statement on it after that fails.
 *
 * @example
 * await prisma.$transaction(async (tx) => {
 *   await tx.order.create({ data: order });
 *   await writer.add(prismaTransaction(tx), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export function prismaTransaction(tx: PrismaTransactionLike): PgQueryable {
  // Prisma leaves `$connect` and `$disconnect` out of the client of an interactive transaction
  // (and, before Prisma 7, `$transaction`).
  const inTransaction = typeof (tx as { $disconnect?: unknown }).$disconnect !== 'function';
  return joinedTransaction(
    async (text, params) => ({ rows: await tx.$queryRawUnsafe<unknown[]>(text, ...params) }),
    () => inTransaction,
    FIX,
  );
}
