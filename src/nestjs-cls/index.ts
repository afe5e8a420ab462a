/**
 * `outboxkit/nestjs-cls`: the writer joins the ambient transaction of
 * `@nestjs-cls/transactional`. nestjs-cls is an optional peer dependency; only this entry point
 * needs it.
 */
export { clsTransaction, type TransactionHostLike } from './cls-transaction.js';
