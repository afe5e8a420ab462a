import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** One numbered SQL file of `migrations/`, rendered for a schema. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/** The folder of the SQL files that ship with the package, for tools that run raw SQL. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../../migrations/', import.meta.url));

/** The table of applied versions: `migrate()` and the Kysely provider both record in it. */
export function versionTableSql(schemaName?: string): string {
  return `CREATE TABLE IF NOT EXISTS ${outboxTables(schemaName).migrations} (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`;
}

/**
 * The versions recorded in that table, as numbers whatever the connection parses int4 to (it
 * may be the application's): `migrate()` and the start checks both read them.
 */
export async function appliedVersions(db: PgQueryable, schemaName?: string): Promise<Set<number>> {
  const { rows } = await db.query(`SELECT version FROM ${outboxTables(schemaName).migrations}`);
  return new Set((rows as { version: unknown }[]).map((r) => Number(r.version)));
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

/**
 * `sql` without the first file's `CREATE SCHEMA IF NOT EXISTS`, for a schema that exists: that
 * statement needs CREATE on the database even then, which the schema's owner may not have.
 */
export function withoutSchemaCreation(sql: string): string {
  return sql.replace(/^CREATE SCHEMA IF NOT EXISTS [^;\n]+;$/m, '');
}

/** Reads the shipped migrations in order, with `{{schema}}` replaced by the quoted schema name. */
export async function loadMigrations(schemaName?: string): Promise<Migration[]> {
  const { schema } = outboxTables(schemaName);
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => FILE_NAME.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const [, version, name] = FILE_NAME.exec(file)!;
      const template = await readFile(`${MIGRATIONS_DIR}${file}`, 'utf8');
      return {
        version: Number(version),
        name: name!,
        sql: template.replaceAll('{{schema}}', schema),
      };
    }),
  );
}
