import { withHandleGate } from '../consumer/consumer-transactions.js';
import { requireTransactionHandle } from '../orm/handle-shape.js';
import { joinedTransaction } from '../orm/joined-transaction.js';
import { typeormRunnerOf, typeormTransactionOpen } from '../orm/typeorm-runner.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { writeBeforeEnd } from '../sql/transaction-end-watch.js';
import { gateQueryRunner } from './gate-query-runner.js';

/** The part of a TypeORM `QueryRunner` the writer uses. */
export interface TypeOrmQueryRunnerLike {
  readonly isTransactionActive: boolean;
  readonly isReleased: boolean;
  /** Its pg client, once connected (TypeORM's Postgres driver). */
  readonly databaseConnection?: { query?: unknown } | undefined;
  query(
    text: string,
    params: unknown[],
    useStructuredResult: true,
  ): Promise<{ records: unknown[] }>;
}

/** The part of a TypeORM `EntityManager` the writer uses. */
export interface TypeOrmEntityManagerLike {
  readonly queryRunner?: TypeOrmQueryRunnerLike | undefined;
}

const FIX =
  'pass the `EntityManager` that `dataSource.transaction(manager => ...)` gives, or a ' +
  '`QueryRunner` after `startTransaction()`; `dataSource.manager` commits every statement on its own.';

/** `typeormTransaction` without its gate. */
function joinTypeormTransaction(
  handle: TypeOrmEntityManagerLike | TypeOrmQueryRunnerLike,
): PgQueryable {
  requireTransactionHandle(handle, [], FIX);
  const runner = typeormRunnerOf(handle);
  return joinedTransaction(
    async (text, params) => {
      const query = async () => (await runner!.query(text, params, true)).records;
      // TypeORM's runner says its transaction is open until the COMMIT is answered: its pg
      // client refuses the write that would follow a COMMIT or ROLLBACK sent on it.
      const client = runner!.databaseConnection;
      const rows = await (typeof client?.query === 'function'
        ? writeBeforeEnd(client, 'query', text, query)
        : query());
      return { rows };
    },
    () => typeormTransactionOpen(runner),
    FIX,
    // `dataSource.transaction` releases its runner once it commits or rolls back.
    () => runner?.isReleased === true,
  );
}

/**
 * The caller's TypeORM transaction, for `writer.add`: the `EntityManager` of
 * `dataSource.transaction(...)`, or a `QueryRunner` after `startTransaction()`. Throws a
 * `NotInTransactionError` for anything outside a transaction, such as `dataSource.manager`.
 *
 * It carries the gate of its handles, so that `clsConsumerTransactions(txHost,
 * typeormTransaction)` refuses a timed-out handler's late statements on `txHost.tx`.
 *
 * @example
 * await dataSource.transaction(async (manager) => {
 *   await manager.save(order);
 *   await writer.add(typeormTransaction(manager), { exchange: 'orders', routingKey: 'order.placed', payload: order });
 * });
 */
export const typeormTransaction: (
  handle: TypeOrmEntityManagerLike | TypeOrmQueryRunnerLike,
) => PgQueryable = withHandleGate(
  joinTypeormTransaction,
  (handle: TypeOrmEntityManagerLike | TypeOrmQueryRunnerLike, closed: () => Error | undefined) => {
    const runner = typeormRunnerOf(handle);
    if (runner) gateQueryRunner(runner, closed);
    return undefined;
  },
);
