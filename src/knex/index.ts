/**
 * `outboxkit/knex`: the writer joins a Knex transaction (pg client), and consumers open theirs
 * with Knex. Knex is an optional peer dependency; only this entry point needs it.
 */
export {
  type KnexConsumerTransactionLike,
  type KnexLike,
  knexConsumerTransactions,
} from './knex-consumer-transactions.js';
export { type KnexTransactionLike, knexTransaction } from './knex-transaction.js';
