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
  // Prisma leaves `$transaction` out of the client it gives an interactive transaction.
  const inTransaction = typeof (tx as { $transaction?: unknown }).$transaction !== 'function';
  return joinedTransaction(
    async (text, params) => {
      // The writer's statements return `void` columns, which Prisma cannot read back.
      if (
        !/\bRETURNING\b/i.test(text) &&
        !/^\s*SELECT\b(?![\s\S]*\bpg_notify\b|[\s\S]*\bpg_advisory_xact_lock\b)/i.test(text)
      ) {
        await tx.$executeRawUnsafe(text, ...params);
        return { rows: [] };
      }
      return { rows: await tx.$queryRawUnsafe<unknown[]>(text, ...params) };
    },
    () => inTransaction,
    FIX,
  );
}
