/**
 * `outboxkit/nestjs-cls`: the writer joins the ambient transaction of
 * `@nestjs-cls/transactional`, and consumers open theirs through it. nestjs-cls is an optional
 * peer dependency; only this entry point needs it.
 */
export {
  type ClsOutboxOptions,
  type ConsumerTransactionHostLike,
  clsConsumerTransactions,
  clsOutbox,
} from './cls-consumer-transactions.js';
export { clsTransaction, type TransactionHostLike } from './cls-transaction.js';
