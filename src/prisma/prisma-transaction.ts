import { NotInTransactionError } from '../errors/not-in-transaction-error.js';
import { requireTransactionHandle } from '../orm/handle-shape.js';
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

const ENDED =
  "this `tx`'s transaction has ended (committed, rolled back, or past its `timeout`): write " +
  'inside the `prisma.$transaction(async tx => ...)` callback, before it returns.';

/** Prisma's code for a statement on a transaction it has closed ("Transaction API error"). */
const TRANSACTION_API_ERROR = 'P2028';

/**
 * The caller's Prisma interactive transaction, for `writer.add`. Throws a
 * `NotInTransactionError` for the `PrismaClient` itself, and for a `tx` whose transaction has
 * ended: Prisma says so only when a statement runs on it, so the writer's first statement fails
 * with that error (Prisma's as its cause).
 *
 * @example
 * await prisma.$transaction(async (tx) => {
 *   await tx.order.create({ data: order });
 *   await writer.add(prismaTransaction(tx), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export function prismaTransaction(tx: PrismaTransactionLike): PgQueryable {
  requireTransactionHandle(tx, ['$queryRawUnsafe'], FIX);
  // Prisma leaves `$connect` and `$disconnect` out of the client of an interactive transaction
  // (and, before Prisma 7, `$transaction`).
  const inTransaction = typeof (tx as { $disconnect?: unknown }).$disconnect !== 'function';
  return joinedTransaction(
    async (text, params) => {
      try {
        return { rows: await tx.$queryRawUnsafe<unknown[]>(text, ...params) };
      } catch (error) {
        if ((error as { code?: unknown } | null)?.code === TRANSACTION_API_ERROR) {
          throw new NotInTransactionError(ENDED, { cause: error });
        }
        throw error;
      }
    },
    () => inTransaction,
    FIX,
  );
}
