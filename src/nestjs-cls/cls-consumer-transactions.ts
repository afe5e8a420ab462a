import type { IsolationLevel } from '../consumer/consumer-definition.js';
import { type ConsumerTransactions, handleGateOf } from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { clsTransaction, type TransactionHostLike } from './cls-transaction.js';

/** `Propagation.RequiresNew` of `@nestjs-cls/transactional`, without importing it. */
const REQUIRES_NEW = 'REQUIRES_NEW' as never;

/** The part of `@nestjs-cls/transactional`'s `TransactionHost` a consumer host uses. */
export interface ConsumerTransactionHostLike<Tx, O> extends TransactionHostLike<Tx> {
  /** Called as `withTransaction(Propagation.RequiresNew, options, fn)`. */
  withTransaction(propagation: never, options: O, fn: () => Promise<void>): Promise<unknown>;
}

/**
 * Opens each consumer transaction through `@nestjs-cls/transactional`, as `@Transactional()`
 * would: the handler runs with that transaction ambient, so `txHost.tx`, `@Transactional()`
 * methods it calls (with the default propagation) and `OutboxService.add` join it, and its
 * writes commit with the dedupe row. `context.tx` is `txHost.tx`.
 *
 * @param join the outboxkit function of the ORM the CLS adapter carries (`typeormTransaction`
 *   with `TransactionalAdapterTypeOrm`, ...): the dedupe row is claimed through it.
 * @param isolation the CLS adapter's transaction options for an isolation level, such as
 *   `(level) => ({ isolationLevel: level.toUpperCase() })` for TypeORM. Without it, the
 *   adapter's default level is used, and a consumer asking for another is refused.
 *
 * @example
 * OutboxModule.forRootAsync({
 *   inject: [TransactionHost],
 *   useFactory: (txHost: TransactionHost<TransactionalAdapterTypeOrm>) => ({
 *     ..., transactions: clsConsumerTransactions(txHost, typeormTransaction),
 *   }),
 * });
 */
export function clsConsumerTransactions<Tx, O = undefined>(
  host: ConsumerTransactionHostLike<Tx, O>,
  join: (tx: Tx) => PgQueryable,
  isolation?: (level: IsolationLevel) => O,
): ConsumerTransactions<Tx> {
  return {
    async run({ isolationLevel, closed }, work) {
      if (!isolation && isolationLevel !== 'read committed') {
        throw new ConfigurationError(
          'isolationLevel',
          `'${isolationLevel}' needs the isolation argument of clsConsumerTransactions`,
        );
      }
      const options = isolation?.(isolationLevel) as O;
      let removeGate: (() => void) | undefined;
      try {
        // A new transaction, whatever context the delivery arrived in.
        await host.withTransaction(REQUIRES_NEW, options, async () => {
          const tx = host.tx;
          // The ORM's own gate, where its writer function carries one: a timed-out handler's
          // statement on `txHost.tx` fails instead of running after the ROLLBACK, on its own.
          removeGate = handleGateOf<Tx>(join)?.(tx, closed);
          const joined = join(tx);
          await work({
            tx,
            query: async (text, params) => ({ rows: (await joined.query(text, params)).rows }),
          });
        });
      } finally {
        removeGate?.();
      }
    },
  };
}

/** The options `clsOutbox` gives `OutboxModule.forRoot` (or its `forRootAsync` factory). */
export interface ClsOutboxOptions<Tx> {
  readonly transactions: ConsumerTransactions<Tx>;
  readonly ambientTransaction: () => PgQueryable;
}

/**
 * The `OutboxModule` options that put outboxkit on the ambient transaction of
 * `@nestjs-cls/transactional`: handlers run in a transaction of `txHost` (as
 * `clsConsumerTransactions` opens it), and `OutboxService.add(message, payload)` without a
 * transaction joins the active one (as `clsTransaction` does), refusing with a
 * `NotInTransactionError` outside one. Spread it into the options.
 *
 * @example
 * OutboxModule.forRootAsync({
 *   inject: [TransactionHost],
 *   useFactory: (txHost: TransactionHost<TransactionalAdapterTypeOrm>) => ({
 *     databaseUrl, amqpUrl, ...clsOutbox(txHost, typeormTransaction),
 *   }),
 * });
 */
export function clsOutbox<Tx, O = undefined>(
  host: ConsumerTransactionHostLike<Tx, O>,
  join: (tx: Tx) => PgQueryable,
  isolation?: (level: IsolationLevel) => O,
): ClsOutboxOptions<Tx> {
  return {
    transactions: clsConsumerTransactions(host, join, isolation),
    ambientTransaction: () => clsTransaction(host, join),
  };
}
