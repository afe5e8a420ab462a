/**
 * `outboxkit/drizzle`: the writer joins a Drizzle transaction (node-postgres driver).
 * drizzle-orm is an optional peer dependency; only this entry point needs it.
 */
export { type DrizzleTransactionLike, drizzleTransaction } from './drizzle-transaction.js';
