/**
 * `outboxkit/drizzle`: the writer joins a Drizzle transaction (node-postgres driver), and
 * consumers open theirs with Drizzle. drizzle-orm is an optional peer dependency; only this
 * entry point needs it.
 */
export {
  type DrizzleDatabaseLike,
  drizzleConsumerTransactions,
} from './drizzle-consumer-transactions.js';
export { type DrizzleTransactionLike, drizzleTransaction } from './drizzle-transaction.js';
