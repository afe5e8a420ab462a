/**
 * `outboxkit/knex`: the writer joins a Knex transaction (pg client). Knex is an optional peer
 * dependency; only this entry point needs it.
 */
export { type KnexTransactionLike, knexTransaction } from './knex-transaction.js';
