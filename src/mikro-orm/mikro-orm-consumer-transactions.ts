import type {
  ConsumerTransaction,
  ConsumerTransactions,
} from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { gateKnexTransaction } from '../knex/gate-knex-transaction.js';
import { knexStatements } from '../knex/knex-transaction.js';
import { requireOrmArgument } from '../orm/handle-shape.js';
import type { RunStatement } from '../orm/joined-transaction.js';
import { kyselyQueryable } from '../sql/kysely-queryable.js';
import {
  gateKyselyContext,
  isKnexContext,
  isKyselyContext,
  releaseAfterFailedRollback,
} from './mikro-orm-context.js';
import { isMikroOrm } from './mikro-orm-transaction.js';

/** The part of a MikroORM `EntityManager` (of `@mikro-orm/postgresql` 6 or 7) a consumer uses. */
export interface MikroOrmConsumerEntityManagerLike {
  /** `isolationLevel` is MikroORM's enum, whose values are outboxkit's level names. */
  begin(options: { isolationLevel: never }): Promise<void>;
  commit(): Promise<void>;
  rollback(): Promise<void>;
  flush(): Promise<void>;
  getTransactionContext<T>(): T | undefined;
  setTransactionContext(context: unknown): void;
}

/** The part of a MikroORM `EntityManager` whose forks a consumer host uses. */
export interface MikroOrmForkableLike<E extends MikroOrmConsumerEntityManagerLike> {
  fork(): E;
}

/**
 * Opens each consumer transaction on a fork of `em` (`orm.em`): the handler gets that fork,
 * inside its transaction, as `context.tx`. Entities it persists are flushed before the commit,
 * and commit with the dedupe row. Pass it as the consumer host's `transactions` option (or the
 * Nest module's).
 *
 * Once the host gives the transaction up, the fork refuses further statements: a timed-out
 * handler's late `flush()` fails rather than run outside the transaction.
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, transactions: mikroOrmConsumerTransactions(orm.em), consumers: [
 *   defineConsumer<OrderPlaced, unknown, EntityManager>({ ..., async handler(order, { tx }) { tx.persist(tx.create(Invoice, { orderId: order.id })); } }),
 * ] });
 */
export function mikroOrmConsumerTransactions<E extends MikroOrmConsumerEntityManagerLike>(
  em: MikroOrmForkableLike<E>,
): ConsumerTransactions<E> {
  requireOrmArgument(
    'mikroOrmConsumerTransactions',
    em,
    ['fork'],
    isMikroOrm(em) ? '`orm.em`, not the MikroORM instance itself' : 'the `EntityManager` `orm.em`',
  );
  return {
    async run({ isolationLevel, closed }, work) {
      const fork = em.fork();
      await fork.begin({ isolationLevel: isolationLevel as never });
      const context = fork.getTransactionContext<unknown>();
      // The fork's entities are flushed after the handlers, when the host has closed the
      // transaction to them already: that flush is let through.
      let flushing = false;
      const gate = () => (flushing ? undefined : closed());
      let query: RunStatement;
      /** Rolls back, rejecting with the ROLLBACK's error if it failed. */
      let rollback: () => Promise<void>;
      if (isKyselyContext(context)) {
        // MikroORM 7. The fork runs everything through the gated view, commit and rollback
        // included; the host's own statements (the claim) go round the gate.
        const gated = gateKyselyContext(context, gate);
        fork.setTransactionContext(gated);
        query = kyselyQueryable(context as never).query as RunStatement;
        rollback = async () => {
          try {
            await fork.rollback();
          } catch (error) {
            await releaseAfterFailedRollback(gated);
            throw error;
          }
        };
      } else if (isKnexContext(context)) {
        gateKnexTransaction(context, gate);
        query = knexStatements(context);
        rollback = async () => {
          await fork.rollback();
          // MikroORM 6 does not wait for the outcome of Knex's ROLLBACK, which Knex gives only
          // there: a failed one (a connection gone) rejects it.
          await (context as { executionPromise?: Promise<unknown> }).executionPromise;
        };
      } else {
        await fork.rollback();
        throw new ConfigurationError(
          'transactions',
          'mikroOrmConsumerTransactions takes the EntityManager of @mikro-orm/postgresql 6 or ' +
            '7, whose transactions are Knex or Kysely ones',
        );
      }
      // What a late statement of the handler meets once the transaction has ended: without a
      // context, the fork would run it on a pooled connection of its own, committing on its
      // own; with the ended one, Knex or the gate refuses it.
      const last = fork.getTransactionContext<unknown>();
      const transaction: ConsumerTransaction<E> = { tx: fork, query };
      try {
        try {
          await work(transaction);
          flushing = true;
          await fork.flush();
          flushing = false;
        } catch (error) {
          flushing = false;
          await rollback();
          throw error;
        }
        try {
          await fork.commit();
        } catch (error) {
          // A failed flush or COMMIT leaves the context set: give the connection back.
          if (fork.getTransactionContext() !== undefined) await rollback().catch(() => {});
          throw error;
        }
      } finally {
        fork.setTransactionContext(last);
      }
    },
  };
}
