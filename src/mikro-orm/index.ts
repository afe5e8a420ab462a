/**
 * `outboxkit/mikro-orm`: the writer joins a MikroORM transaction, and consumers open theirs
 * with MikroORM. MikroORM is an optional peer dependency; only this entry point needs it.
 */
export {
  type MikroOrmConsumerEntityManagerLike,
  type MikroOrmForkableLike,
  mikroOrmConsumerTransactions,
} from './mikro-orm-consumer-transactions.js';
export { type MikroOrmEntityManagerLike, mikroOrmTransaction } from './mikro-orm-transaction.js';
