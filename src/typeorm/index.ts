/**
 * `outboxkit/typeorm`: the writer joins a TypeORM transaction. TypeORM is an optional peer
 * dependency; only this entry point needs it.
 */
export {
  type TypeOrmEntityManagerLike,
  type TypeOrmQueryRunnerLike,
  typeormTransaction,
} from './typeorm-transaction.js';
