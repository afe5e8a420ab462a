import type { IsolationLevel } from '../consumer/consumer-definition.js';
import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { requireOrmArgument } from '../orm/handle-shape.js';
import { durationMs, MAX_TIMER_MS } from '../util/duration-option.js';
import type { PrismaTransactionLike } from './prisma-transaction.js';

type PrismaIsolationLevel = 'ReadCommitted' | 'RepeatableRead' | 'Serializable';

/** The part of a `PrismaClient` a consumer host uses. */
export interface PrismaClientLike<T extends PrismaTransactionLike> {
  $transaction<R>(
    work: (tx: T) => Promise<R>,
    options: { isolationLevel: PrismaIsolationLevel; maxWait: number; timeout: number },
  ): Promise<R>;
}

/** Settings of `prismaConsumerTransactions`. */
export interface PrismaConsumerTransactionOptions {
  /**
   * How long a transaction waits for a connection of Prisma's pool before it fails (Prisma's
   * `maxWait`). Default: the consumer's `timeoutMs`.
   */
  readonly maxWaitMs?: number | undefined;
}

const ISOLATION: Record<IsolationLevel, PrismaIsolationLevel> = {
  'read committed': 'ReadCommitted',
  'repeatable read': 'RepeatableRead',
  serializable: 'Serializable',
};

/** Time beyond the claim and the handlers a transaction may take: the cancel of a timed-out one. */
const SLACK_MS = 10_000;

/**
 * Opens each consumer transaction as a Prisma interactive transaction: the handler gets its
 * `tx` as `context.tx`, and its writes commit with the dedupe row. Pass it as the consumer
 * host's `transactions` option (or the Nest module's).
 *
 * Prisma's own transaction `timeout` is set above what the claim and the handlers may take
 * (the consumer's `timeoutMs` for the claim and for each handler of a batch, and 10 s), so the
 * consumer's limit is the one that acts.
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, transactions: prismaConsumerTransactions(prisma), consumers: [
 *   defineConsumer<OrderPlaced, unknown, Prisma.TransactionClient>({ ..., async handler(order, { tx }) { await tx.invoice.create({ data: { orderId: order.id } }); } }),
 * ] });
 */
export function prismaConsumerTransactions<T extends PrismaTransactionLike>(
  prisma: PrismaClientLike<T>,
  settings: PrismaConsumerTransactionOptions = {},
): ConsumerTransactions<T> {
  const expected = 'the `PrismaClient`';
  requireOrmArgument('prismaConsumerTransactions', prisma, ['$transaction'], expected);
  // An interactive transaction's client has no `$disconnect` (see prismaTransaction).
  if (typeof (prisma as { $disconnect?: unknown }).$disconnect !== 'function') {
    throw new ConfigurationError(
      'transactions',
      `prismaConsumerTransactions takes ${expected}, not a transaction's \`tx\`: each message gets a transaction of its own`,
    );
  }
  const maxWaitMs =
    settings.maxWaitMs === undefined ? undefined : durationMs('maxWaitMs', settings.maxWaitMs);
  return {
    async run({ isolationLevel, timeoutMs, handlers }, work) {
      await prisma.$transaction(
        (tx) =>
          work({
            tx,
            query: async (text, params) => ({
              rows: await tx.$queryRawUnsafe<unknown[]>(text, ...params),
            }),
          }),
        {
          isolationLevel: ISOLATION[isolationLevel],
          maxWait: maxWaitMs ?? timeoutMs,
          // Prisma times the transaction with a Node timer: past its limit it would fire at once.
          // `handlers` may be missing from an adapter's own caller written before it was added.
          timeout: Math.min(((handlers ?? 1) + 1) * timeoutMs + SLACK_MS, MAX_TIMER_MS),
        },
      );
    },
  };
}
