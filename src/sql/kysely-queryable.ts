import { CompiledQuery, type Kysely } from 'kysely';
import type { PgQueryable } from './sql-executor.js';

/**
 * Runs statements on a Kysely instance, for outboxkit's reads outside a transaction. Without the
 * application's plugins: one that rewrites result rows (`CamelCasePlugin`) would rename the
 * columns outboxkit reads.
 */
// biome-ignore lint/suspicious/noExplicitAny: any database type will do for raw statements
export function kyselyQueryable(db: Kysely<any>): PgQueryable {
  // A stand-in taken by its shape may lack it.
  const bare = typeof db.withoutPlugins === 'function' ? db.withoutPlugins() : db;
  return {
    async query(text: string, params: unknown[] = []) {
      const result = await bare.executeQuery(CompiledQuery.raw(text, params));
      return { rows: [...result.rows] };
    },
  };
}
