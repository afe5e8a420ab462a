import type { IsolationLevel } from '../consumer/consumer-definition.js';
import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { requireOrmArgument } from '../orm/handle-shape.js';
import { gateQueryRunner } from './gate-query-runner.js';

type TypeOrmIsolationLevel = 'READ COMMITTED' | 'REPEATABLE READ' | 'SERIALIZABLE';

/** The part of a TypeORM `QueryRunner` a consumer's transaction uses. */
export interface TypeOrmConsumerQueryRunnerLike<M> {
  readonly manager: M;
  startTransaction(isolationLevel?: TypeOrmIsolationLevel): Promise<void>;
  commitTransaction(): Promise<void>;
  rollbackTransaction(): Promise<void>;
  release(): Promise<void>;
  // biome-ignore lint/suspicious/noExplicitAny: TypeORM's overloads of query
  query(text: string, params?: unknown[], useStructuredResult?: boolean): Promise<any>;
}

/** The part of a TypeORM `DataSource` a consumer host uses. */
export interface TypeOrmDataSourceLike<M> {
  createQueryRunner(mode?: 'master'): TypeOrmConsumerQueryRunnerLike<M>;
}

const ISOLATION: Record<IsolationLevel, TypeOrmIsolationLevel> = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

/**
 * Opens each consumer transaction as a TypeORM transaction of `dataSource`: the handler gets its
 * `EntityManager` as `context.tx`, and its writes commit with the dedupe row. Pass it as the
 * consumer host's `transactions` option (or the Nest module's).
 *
 * The transaction runs on a `QueryRunner` of its own; once the host gives it up (the handler
 * timed out or threw, or it is about to commit), the handler's further statements on that
 * manager fail with the host's error instead of running after the ROLLBACK or COMMIT.
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, transactions: typeormConsumerTransactions(dataSource), consumers: [
 *   defineConsumer<OrderPlaced, unknown, EntityManager>({ ..., async handler(order, { tx }) { await tx.save(Invoice, { orderId: order.id }); } }),
 * ] });
 */
export function typeormConsumerTransactions<M>(
  dataSource: TypeOrmDataSourceLike<M>,
): ConsumerTransactions<M> {
  requireOrmArgument(
    'typeormConsumerTransactions',
    dataSource,
    ['createQueryRunner'],
    'the `DataSource` (not its `manager`)',
  );
  return {
    async run({ isolationLevel, closed }, work) {
      const runner = dataSource.createQueryRunner('master');
      try {
        await runner.startTransaction(ISOLATION[isolationLevel]);
        // Every statement of the manager goes through the runner's `query`, COMMIT and
        // ROLLBACK included; only those two pass once the host has given the transaction up.
        const query = gateQueryRunner(runner, closed);
        try {
          await work({
            tx: runner.manager,
            query: async (text, params) => ({ rows: (await query(text, params, true)).records }),
          });
        } catch (error) {
          await runner.rollbackTransaction();
          throw error;
        }
        await runner.commitTransaction();
      } finally {
        await runner.release();
      }
    },
  };
}
