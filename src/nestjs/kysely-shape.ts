import type { CompiledQuery, QueryResult } from 'kysely';

// The module takes Kysely objects by shape, not as `Kysely` or `Transaction`: those classes
// have private fields, so TypeScript tells apart kysely's CommonJS and ES module typings. A
// CommonJS application (whose `kysely` resolves to the CommonJS typings) could otherwise not
// pass its instance to outboxkit, an ES module whose typings see the other copy.

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
