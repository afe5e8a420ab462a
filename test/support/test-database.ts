import { randomBytes } from 'node:crypto';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrate } from '../../src/migrate/migrate.js';
import { DATABASE_URL } from './env.js';

/** A schema of its own for one test file, migrated, dropped by `close()`. */
export interface TestDatabase {
  readonly schema: string;
  readonly pool: pg.Pool;
  // biome-ignore lint/suspicious/noExplicitAny: tests write to tables of their own making
  readonly db: Kysely<any>;
  count(table?: string): Promise<number>;
  close(): Promise<void>;
}

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(4).toString('hex')}`;
}

export async function testDatabase(
  prefix = 't',
  options: { migrate?: boolean } = {},
): Promise<TestDatabase> {
  const schema = uniqueName(prefix);
  // Above the 10 connections a relay on it holds at most at its defaults (it warns otherwise),
  // so the test's own reads do not wait behind the relay's batches.
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12 });
  pool.on('error', () => {});
  if (options.migrate !== false) await migrate(pool, { schema });
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  return {
    schema,
    pool,
    db,
    async count(table = 'outbox') {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM "${schema}"."${table}"`);
      return rows[0].n as number;
    },
    async close() {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.destroy();
      // Kysely ends the pool only if it ran a query; an idle client would keep the test
      // process alive for pg's idle timeout.
      if (!pool.ended) await pool.end();
    },
  };
}
