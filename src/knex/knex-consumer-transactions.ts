import type {
  ConsumerTransactionOptions,
  ConsumerTransactions,
} from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { requireOrmArgument } from '../orm/handle-shape.js';

import { gateKnexTransaction } from './gate-knex-transaction.js';
import { knexStatements } from './knex-transaction.js';

/** The part of a Knex transaction (`trx`) a consumer's transaction uses. */
export interface KnexConsumerTransactionLike {
  raw(sql: string, bindings: readonly unknown[]): PromiseLike<{ rows: unknown[] }>;
  /** Knex's client of this transaction alone, through which every statement of it goes. */
  readonly client: object;
}

/** The part of a `knex` instance a consumer host uses. */
export interface KnexLike<T extends KnexConsumerTransactionLike> {
  transaction<R>(
    work: (trx: T) => Promise<R>,
    config: { isolationLevel: ConsumerTransactionOptions['isolationLevel'] },
  ): PromiseLike<R>;
}

/**
 * Opens each consumer transaction as a Knex transaction (pg client): the handler gets its
 * `trx` as `context.tx`, and its writes commit with the dedupe row. Pass it as the consumer
 * host's `transactions` option (or the Nest module's).
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, transactions: knexConsumerTransactions(knex), consumers: [
 *   defineConsumer<OrderPlaced, unknown, Knex.Transaction>({ ..., async handler(order, { tx }) { await tx('invoices').insert({ orderId: order.id }); } }),
 * ] });
 */
export function knexConsumerTransactions<T extends KnexConsumerTransactionLike>(
  knex: KnexLike<T>,
): ConsumerTransactions<T> {
  const expected = 'the `knex` instance that `knex({ client: "pg", ... })` gives';
  requireOrmArgument('knexConsumerTransactions', knex, ['transaction'], expected);
  if ((knex as { isTransaction?: unknown }).isTransaction === true) {
    throw new ConfigurationError(
      'transactions',
      `knexConsumerTransactions takes ${expected}, not a transaction's \`trx\`: each message gets a transaction of its own`,
    );
  }
  return {
    async run({ isolationLevel, closed }, work) {
      await knex.transaction(
        async (trx) => {
          gateKnexTransaction(trx, closed);
          const query = knexStatements(trx);
          await work({ tx: trx, query });
        },
        { isolationLevel },
      );
    },
  };
}
