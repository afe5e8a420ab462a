import type { CompiledQuery, QueryResult } from 'kysely';

// outboxkit takes Kysely objects by shape, not as `Kysely` or `Transaction`: those classes have
// private fields, so TypeScript tells apart kysely's CommonJS and ES module typings (kysely
// 0.28 ships both). A CommonJS application (whose `kysely` resolves to the CommonJS typings)
// could otherwise not pass its instance or its transactions to outboxkit, an ES module whose
// typings see the other copy.

/** A Kysely instance or transaction: anything that runs compiled queries. */
export interface KyselyQueryRunner {
  readonly isTransaction: boolean;
  executeQuery<R>(query: CompiledQuery<R>): Promise<QueryResult<R>>;
}

/** A Kysely instance, as the module needs it: it opens the handlers' transactions. */
export interface KyselyInstance extends KyselyQueryRunner {
  transaction(): unknown;
  destroy(): Promise<void>;
}

/**
 * A Kysely transaction (`isTransaction` is `true` on a `Transaction` and a
 * `ControlledTransaction`, a `boolean` on a `Kysely`): what the writer joins. A `Kysely`
 * instance does not fit, so passing `db` where `trx` belongs fails to compile.
 */
export interface KyselyTransactionLike extends KyselyQueryRunner {
  readonly isTransaction: true;
}
