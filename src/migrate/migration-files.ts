import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { OutboxkitError } from '../errors/outboxkit-error.js';
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
 * The versions of the SQL files in `migrations/`, kept here so that the start checks need not
 * read the folder: a bundle of the application often ships without it (a test keeps the two
 * in step).
 */
export const SHIPPED_VERSIONS: readonly number[] = [1, 2, 3, 4, 5];

/**
 * `sql` without the first file's `CREATE SCHEMA IF NOT EXISTS`, for a schema that exists: that
 * statement needs CREATE on the database even then, which the schema's owner may not have.
 */
export function withoutSchemaCreation(sql: string): string {
  return sql.replace(/^CREATE SCHEMA IF NOT EXISTS [^;\n]+;$/m, '');
}

async function shippedFiles(): Promise<string[]> {
  try {
    return await readdir(MIGRATIONS_DIR);
  } catch (error) {
    throw new OutboxkitError(
      'migrations-missing',
      `outboxkit's SQL migrations are not at ${MIGRATIONS_DIR}: an application bundle that includes outboxkit must ship the package's migrations/ folder at that path (docs/operations.md, "Bundling"), or reinstall outboxkit`,
      { cause: error },
    );
  }
}

/** Reads the shipped migrations in order, with `{{schema}}` replaced by the quoted schema name. */
export async function loadMigrations(schemaName?: string): Promise<Migration[]> {
  const { schema } = outboxTables(schemaName);
  const files = (await shippedFiles()).filter((f) => FILE_NAME.test(f)).sort();
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
