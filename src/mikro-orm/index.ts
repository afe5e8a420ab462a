/**
 * `outboxkit/mikro-orm`: the writer joins a MikroORM transaction. MikroORM is an optional peer
 * dependency; only this entry point needs it.
 */
export { type MikroOrmEntityManagerLike, mikroOrmTransaction } from './mikro-orm-transaction.js';
