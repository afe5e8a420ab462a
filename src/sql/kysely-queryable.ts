import { CompiledQuery, type Kysely } from 'kysely';
import type { PgQueryable } from './sql-executor.js';

/** Runs statements on a Kysely instance, for outboxkit's reads outside a transaction. */
// biome-ignore lint/suspicious/noExplicitAny: any database type will do for raw statements
export function kyselyQueryable(db: Kysely<any>): PgQueryable {
  return {
    async query(text: string, params: unknown[] = []) {
      const result = await db.executeQuery(CompiledQuery.raw(text, params));
      return { rows: [...result.rows] };
    },
  };
}
