/**
 * `outboxkit/prisma`: the writer joins a Prisma interactive transaction, and consumers open
 * theirs with Prisma. Prisma is an optional peer dependency; only this entry point needs it.
 */
export {
  type PrismaClientLike,
  type PrismaConsumerTransactionOptions,
  prismaConsumerTransactions,
} from './prisma-consumer-transactions.js';
export { type PrismaTransactionLike, prismaTransaction } from './prisma-transaction.js';
