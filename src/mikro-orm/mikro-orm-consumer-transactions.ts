import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { gateKnexTransaction } from '../knex/gate-knex-transaction.js';
import type { KnexConsumerTransactionLike } from '../knex/knex-consumer-transactions.js';
import { knexStatements } from '../knex/knex-transaction.js';

/** The part of a MikroORM `EntityManager` (of `@mikro-orm/postgresql` 6) a consumer uses. */
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
  return {
    async run({ isolationLevel, closed }, work) {
      const fork = em.fork();
      await fork.begin({ isolationLevel: isolationLevel as never });
      const trx = fork.getTransactionContext<KnexConsumerTransactionLike>()!;
      // The fork's entities are flushed after the handlers, when the host has closed the
      // transaction to them already: that flush is let through.
      let flushing = false;
      gateKnexTransaction(trx, () => (flushing ? undefined : closed()));
      try {
        try {
          await work({ tx: fork, query: knexStatements(trx) });
          flushing = true;
          await fork.flush();
          flushing = false;
        } catch (error) {
          flushing = false;
          await fork.rollback();
          // MikroORM does not wait for the outcome of Knex's ROLLBACK, which Knex gives only
          // there: a failed one (a connection gone) rejects it.
          await (trx as { executionPromise?: Promise<unknown> }).executionPromise;
          throw error;
        }
        try {
          await fork.commit();
        } catch (error) {
          // A failed flush or COMMIT leaves the context set: give the connection back.
          if (fork.getTransactionContext() !== undefined) await fork.rollback().catch(() => {});
          throw error;
        }
      } finally {
        // Without a context, the fork would run a late statement on a pooled connection of its
        // own, committing on its own; with the ended one, Knex refuses it.
        fork.setTransactionContext(trx);
      }
    },
  };
}
