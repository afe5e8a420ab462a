import { CompiledQuery } from 'kysely';
import type { PgQueryable } from './sql-executor.js';

/**
 * Runs outboxkit's own statements on a Kysely instance or transaction, without the
 * application's plugins: one that rewrites result rows (`CamelCasePlugin`) would rename the
 * columns outboxkit reads.
 */
export function kyselyQueryable(
  db: CompiledQueryExecutor & { withoutPlugins?: () => CompiledQueryExecutor },
): PgQueryable {
  // One taken by its shape (`KyselyQueryRunner`) need not have it.
  const bare = typeof db.withoutPlugins === 'function' ? db.withoutPlugins() : db;
  return { query: rawStatements(bare) };
}

/** What runs a compiled query: a Kysely instance or transaction, or a view of one. */
export interface CompiledQueryExecutor {
  executeQuery(query: CompiledQuery): Promise<{ readonly rows: readonly unknown[] }>;
}

/** Runs statements with positional (`$1`) parameters on `executor`, as it is given. */
export function rawStatements(
  executor: CompiledQueryExecutor,
): (text: string, params?: unknown[]) => Promise<{ rows: unknown[] }> {
  return async (text, params = []) => {
    const result = await executor.executeQuery(CompiledQuery.raw(text, params));
    return { rows: [...result.rows] };
  };
}
