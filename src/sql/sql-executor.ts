import { CompiledQuery, type QueryExecutor } from 'kysely';
import pg from 'pg';
import { NotInTransactionError, TRANSACTION_ENDED } from '../errors/not-in-transaction-error.js';
import { typeormRunnerOf, typeormTransactionOpen } from '../orm/typeorm-runner.js';
import { kyselyQueryable } from './kysely-queryable.js';
import type { KyselyTransactionLike } from './kysely-shape.js';
import { writeBeforeEnd } from './transaction-end-watch.js';

/** The one thing outboxkit needs from a connection: run a statement with positional parameters. */
export interface SqlExecutor {
  query<R = Record<string, unknown>>(
    text: string,
    params?: readonly unknown[],
  ): Promise<{ rows: R[] }>;
}

/** The part of a pg `Client` or `PoolClient` the writer uses. */
export interface PgQueryable {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  getTransactionStatus?: (() => string | null) | undefined;
}

/**
 * A pg client (or an ORM's transaction joined by its adapter), not a pg `Pool`: a pool runs
 * each statement on whichever connection is free, outside any transaction. A pool's
 * `totalCount` tells it apart for the compiler; the writer refuses one at run time too.
 */
export type PgTransactionClient = PgQueryable & { readonly totalCount?: never };

/**
 * A Kysely transaction (of any database type, taken by its shape: see `KyselyTransactionLike`),
 * a pg client inside a transaction: what the writer joins.
 */
export type TransactionLike = KyselyTransactionLike | PgTransactionClient;

/** Kysely's words for a statement on a transaction that has committed or rolled back. */
const KYSELY_ENDED = /^Transaction is already (committed|rolled back)/;

function isKysely(value: TransactionLike): value is KyselyTransactionLike {
  return (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { executeQuery?: unknown }).executeQuery === 'function'
  );
}

/**
 * Whether `trx` hands a statement's text to pg as it is, so that a named one
 * (`namedStatement`) is prepared: a Kysely transaction (its Postgres driver does) or a pg client.
 * An ORM adapter's handle passes the text to the ORM, which may want a string.
 */
export function sendsStatementNames(trx: TransactionLike): boolean {
  return isKysely(trx) || trx instanceof pg.Client;
}

/**
 * Adapts the caller's transaction to a `SqlExecutor`, refusing anything that would commit on
 * its own: a Kysely instance that is not a transaction, a pg client outside `BEGIN`, or a pg
 * Pool.
 */
export function transactionExecutor(trx: TransactionLike): SqlExecutor {
  if (isKysely(trx)) {
    if (!trx.isTransaction) throw new NotInTransactionError();
    // Without the application's plugins: they are for its own queries.
    const statements = kyselyQueryable(trx);
    const executor = (trx as { getExecutor?: () => Partial<QueryExecutor> }).getExecutor?.();
    const provider = typeof executor?.provideConnection === 'function' ? executor : undefined;
    return {
      async query<R>(text: string, params: readonly unknown[] = []) {
        try {
          if (!provider) return (await statements.query(text, [...params])) as { rows: R[] };
          // On the transaction's connection itself, to refuse a write that would follow the
          // COMMIT or ROLLBACK sent on it (see `watchTransactionEnd`).
          return await provider.provideConnection!((connection) =>
            writeBeforeEnd(connection, 'executeQuery', text, async () => {
              const result = await connection.executeQuery(CompiledQuery.raw(text, [...params]));
              return { rows: [...result.rows] as R[] };
            }),
          );
        } catch (error) {
          // Kysely refuses a statement on a transaction it has ended before sending anything.
          if (error instanceof Error && KYSELY_ENDED.test(error.message)) {
            throw new NotInTransactionError(TRANSACTION_ENDED, { cause: error });
          }
          throw error;
        }
      },
    };
  }
  const client: PgQueryable = trx;
  if (client === null || typeof client !== 'object' || typeof client.query !== 'function') {
    throw new NotInTransactionError(adapterFix(client));
  }
  if (typeof client.getTransactionStatus === 'function') {
    // pg reports the server's transaction status since 8.x; 'I' means idle, outside a transaction.
    if (client.getTransactionStatus() === 'I') throw new NotInTransactionError();
  } else {
    const orm = ormHandle(client);
    if (orm !== undefined) {
      if (!orm.inTransaction) throw new NotInTransactionError(orm.fix);
    } else if (typeof (client as { connect?: unknown }).connect === 'function') {
      // A pg Pool: it type-checks as a client, but runs each statement on whichever connection
      // is free, outside any transaction, so the row would commit on its own.
      throw new NotInTransactionError(
        'a pg Pool runs each statement in a transaction of its own: check out a client with ' +
          '`pool.connect()`, run `BEGIN` on it and pass the client, or pass the Kysely `trx`.',
      );
    }
  }
  return {
    async query<R>(text: string, params: readonly unknown[] = []) {
      const send = async () => {
        const result = await client.query(text, [...params]);
        // A TypeORM handle's query() gives the rows themselves.
        return { rows: (Array.isArray(result) ? result : result.rows) as R[] };
      };
      // A pg client's statements are watched as a Kysely connection's; an ORM's handle is not.
      return client instanceof pg.Client ? writeBeforeEnd(client, 'query', text, send) : send();
    },
  };
}

const TYPEORM_FIX =
  'would commit the row on its own: pass `typeormTransaction(manager)` with the ' +
  '`EntityManager` that `dataSource.transaction(manager => ...)` gives, or ' +
  '`typeormTransaction(queryRunner)` after `startTransaction()` (from `outboxkit/typeorm`); ' +
  '`dataSource.manager` commits every statement on its own.';

/**
 * What to pass instead of an ORM's own handle that has no `query()` (a Prisma, Drizzle, Knex or
 * MikroORM handle given without its adapter): the adapter's function; undefined for anything
 * else, which gets the Kysely and pg advice.
 */
function adapterFix(handle: unknown): string | undefined {
  if (handle === null || (typeof handle !== 'object' && typeof handle !== 'function')) {
    return undefined;
  }
  const h = handle as Record<string, unknown>;
  const wrap = (library: string, call: string, subpath: string, handles: string) =>
    `this is a ${library} handle: pass \`${call}\` (from \`outboxkit/${subpath}\`) with ${handles} (docs/orm.md).`;
  if (typeof h.$queryRawUnsafe === 'function') {
    return wrap(
      'Prisma',
      'prismaTransaction(tx)',
      'prisma',
      'the `tx` of `prisma.$transaction(async tx => ...)`',
    );
  }
  if (typeof h.fork === 'function' && typeof h.getTransactionContext === 'function') {
    return wrap(
      'MikroORM',
      'mikroOrmTransaction(em)',
      'mikro-orm',
      'the `em` of `em.transactional(em => ...)`',
    );
  }
  if (typeof handle === 'function' && typeof h.raw === 'function') {
    return wrap(
      'Knex',
      'knexTransaction(trx)',
      'knex',
      'the `trx` of `knex.transaction(trx => ...)`',
    );
  }
  if (typeof h.execute === 'function' && typeof h.select === 'function' && 'session' in h) {
    return wrap(
      'Drizzle',
      'drizzleTransaction(tx)',
      'drizzle',
      'the `tx` of `db.transaction(tx => ...)`',
    );
  }
  return undefined;
}

/** An ORM's own handle, which has a `query()` and so passes for a pg client. */
interface OrmHandle {
  /** Its statements run in a transaction that is open now. */
  readonly inTransaction: boolean;
  /** What to pass instead, when they would not. */
  readonly fix: string;
}

/**
 * An ORM's own handle given to the writer without outboxkit's adapter. TypeORM's
 * `EntityManager` and `QueryRunner` run in their transaction only while it is open (their
 * runner tells), and `dataSource.manager` has none: it wrote the row outside any transaction.
 * Anything else that opens transactions (`transaction()`, `$transaction()`) is not one.
 */
function ormHandle(handle: object): OrmHandle | undefined {
  const marker = (handle as { '@instanceof'?: unknown })['@instanceof'];
  const asRunner = handle as { startTransaction?: unknown; isTransactionActive?: unknown };
  const isRunner =
    typeof asRunner.startTransaction === 'function' &&
    typeof asRunner.isTransactionActive === 'boolean';
  const kind =
    marker === Symbol.for('EntityManager')
      ? 'EntityManager'
      : marker === Symbol.for('DataSource')
        ? 'DataSource'
        : isRunner
          ? 'QueryRunner'
          : undefined;
  if (kind !== undefined) {
    // A DataSource has no runner: it is never in a transaction.
    const runner = typeormRunnerOf(handle as Parameters<typeof typeormRunnerOf>[0]);
    return {
      inTransaction: typeormTransactionOpen(runner),
      fix: `a TypeORM ${kind} outside a transaction ${TYPEORM_FIX}`,
    };
  }
  const opener = handle as { transaction?: unknown; $transaction?: unknown };
  if (typeof opener.transaction === 'function' || typeof opener.$transaction === 'function') {
    return {
      inTransaction: false,
      fix:
        'this handle opens transactions (it has a `transaction()` method), so it is not one: ' +
        "pass the transaction it opens, through outboxkit's adapter for its library (docs/orm.md).",
    };
  }
  return undefined;
}
