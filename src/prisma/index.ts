/**
 * `outboxkit/prisma`: the writer joins a Prisma interactive transaction. Prisma is an optional
 * peer dependency; only this entry point needs it.
 */
export { type PrismaTransactionLike, prismaTransaction } from './prisma-transaction.js';
