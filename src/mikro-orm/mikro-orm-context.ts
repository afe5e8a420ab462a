import type { CompiledQuery, Transaction } from 'kysely';
import { closableTransaction } from '../consumer/closable-transaction.js';
import type { KnexConsumerTransactionLike } from '../knex/knex-consumer-transactions.js';
import type { RunStatement } from '../orm/joined-transaction.js';
import { rawStatements } from '../sql/kysely-queryable.js';

/**
 * MikroORM 7's transaction context: a Kysely `ControlledTransaction` of the kysely MikroORM
 * depends on itself (7.2.5 pins 0.29.6), not necessarily the one outboxkit imports. Only its
 * shape is used: a compiled query is a plain object either version runs.
 */
export interface MikroOrmKyselyContextLike {
  readonly isTransaction: true;
  readonly isCommitted: boolean;
  readonly isRolledBack: boolean;
  executeQuery(query: CompiledQuery): Promise<{ readonly rows: readonly unknown[] }>;
  savepoint(name: string): { execute(): Promise<MikroOrmKyselyContextLike> };
  rollback(): { execute(): Promise<void> };
  getExecutor(): {
    provideConnection<T>(consumer: (connection: object) => Promise<T>): Promise<T>;
  };
}

/** MikroORM 6's transaction context (`@mikro-orm/knex`): a Knex transaction. */
export function isKnexContext(context: unknown): context is KnexConsumerTransactionLike {
  // A Knex transaction is a function (`trx('orders')`) with Knex's methods on it.
  return (
    (typeof context === 'function' || (typeof context === 'object' && context !== null)) &&
    typeof (context as { raw?: unknown }).raw === 'function'
  );
}

/** MikroORM 7's transaction context, after `begin()` or in `transactional()`. */
export function isKyselyContext(context: unknown): context is MikroOrmKyselyContextLike {
  const candidate = context as Partial<MikroOrmKyselyContextLike> | null | undefined;
  return (
    typeof candidate === 'object' &&
    candidate !== null &&
    candidate.isTransaction === true &&
    typeof candidate.isCommitted === 'boolean' &&
    typeof candidate.executeQuery === 'function' &&
    typeof candidate.savepoint === 'function'
  );
}

/** Whether Kysely has committed or rolled back `context`. */
export function kyselyContextEnded(context: MikroOrmKyselyContextLike): boolean {
  return context.isCommitted || context.isRolledBack;
}

/**
 * Runs a statement with positional (`$1`) parameters on `context` itself, so through its gate
 * when it is a consumer's (see `gateKyselyContext`): `kyselyQueryable`'s `withoutPlugins()` view
 * would go round the gate, and in Kysely 0.29.6 a view never sees its transaction end.
 */
export function kyselyContextStatements(context: MikroOrmKyselyContextLike): RunStatement {
  return rawStatements(context);
}

/**
 * A view of `context` whose statements fail with `closed()`'s error once it returns one, as
 * `closableTransaction` makes it for a Kysely transaction; so are those of the savepoints a
 * nested `transactional()` makes from it. Kysely 0.29.6 (MikroORM 7.2.5's) never marks a
 * savepoint ended: only the gate refuses a statement of one after its transaction.
 */
export function gateKyselyContext(
  context: MikroOrmKyselyContextLike,
  closed: () => Error | undefined,
): MikroOrmKyselyContextLike {
  const view = closableTransaction(
    context as unknown as Transaction<unknown>,
    closed,
  ) as unknown as MikroOrmKyselyContextLike;
  const savepoint = view.savepoint.bind(view);
  view.savepoint = (name) => {
    const error = closed();
    if (error) throw error;
    const command = savepoint(name);
    return { execute: async () => gateKyselyContext(await command.execute(), closed) };
  };
  return view;
}

/**
 * Gives back the pooled connection of `context` after MikroORM's ROLLBACK of it failed (its
 * connection is gone). Kysely 0.29.6, which MikroORM 7.2.5 pins, then keeps the connection
 * checked out for good (0.29.8 releases it): each outage under a handler would take a connection
 * from the pool, and `orm.close()` would wait for them forever. The ROLLBACK is tried once more,
 * and its failure taken for the end it is, so that Kysely releases the connection; pg's pool
 * drops a client whose connection failed.
 */
export async function releaseAfterFailedRollback(
  context: MikroOrmKyselyContextLike,
): Promise<void> {
  if (kyselyContextEnded(context)) return;
  const connection = (await context.getExecutor().provideConnection(async (held) => held)) as {
    executeQuery(query: CompiledQuery): Promise<unknown>;
  };
  const executeQuery = connection.executeQuery;
  connection.executeQuery = (query) =>
    executeQuery.call(connection, query).catch(() => ({ rows: [] }));
  try {
    await context.rollback().execute();
  } finally {
    // The connection object outlives the transaction: Kysely reuses it for its pg client.
    Reflect.deleteProperty(connection, 'executeQuery');
  }
}
