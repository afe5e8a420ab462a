import { CompiledQuery, type Kysely } from 'kysely';
import type { PgQueryable } from './sql-executor.js';

/**
 * Runs outboxkit's own statements on a Kysely instance or transaction, without the
 * application's plugins: one that rewrites result rows (`CamelCasePlugin`) would rename the
 * columns outboxkit reads.
 */
// biome-ignore lint/suspicious/noExplicitAny: any database type will do for raw statements
export function kyselyQueryable(db: Kysely<any>): PgQueryable {
  // One taken by its shape (the Nest module's `KyselyQueryRunner`) need not have it.
  const bare = typeof db.withoutPlugins === 'function' ? db.withoutPlugins() : db;
  return {
    async query(text: string, params: unknown[] = []) {
      const result = await bare.executeQuery(CompiledQuery.raw(text, params));
      return { rows: [...result.rows] };
    },
  };
}
