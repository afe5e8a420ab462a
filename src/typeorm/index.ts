/**
 * `outboxkit/typeorm`: the writer joins a TypeORM transaction, and consumers open theirs with
 * TypeORM. TypeORM is an optional peer dependency; only this entry point needs it.
 */
export {
  type TypeOrmConsumerQueryRunnerLike,
  type TypeOrmDataSourceLike,
  typeormConsumerTransactions,
} from './typeorm-consumer-transactions.js';
export {
  type TypeOrmEntityManagerLike,
  type TypeOrmQueryRunnerLike,
  typeormTransaction,
} from './typeorm-transaction.js';
