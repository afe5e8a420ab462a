import { sqlStateOf } from '../consumer/database-errors.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StartupError } from '../errors/startup-error.js';
import { appliedVersions, loadMigrations } from '../migrate/migration-files.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { databaseMisconfiguration } from './misconfiguration.js';

/** How the advice to migrate reads, ready to paste into a shell. */
export function migrateCommandFor(schema: string): string {
  const word = /^[\w.-]+$/.test(schema) ? schema : `'${schema.replaceAll("'", "'\\''")}'`;
  return `outboxkit migrate --schema ${word}`;
}

/** SQLSTATE undefined_table. */
const UNDEFINED_TABLE = '42P01';

/**
 * The error to throw in place of `error` when it is Postgres' "relation does not exist" from a
 * statement that names only outboxkit's tables: the schema was never migrated, and the message
 * says what to run (`then`: when, such as "first"). Undefined for any other error.
 */
export function notMigratedError(
  error: unknown,
  schema: string,
  then: string,
): OutboxkitError | undefined {
  if (sqlStateOf(error) !== UNDEFINED_TABLE) return undefined;
  return new OutboxkitError(
    'schema-not-migrated',
    `schema ${JSON.stringify(schema)} has no outboxkit tables: run \`${migrateCommandFor(schema)}\` ${then}`,
    { cause: error },
  );
}

/**
 * `pool` whose statements, on a schema without outboxkit's tables, fail with
 * `notMigratedError` (naming the command to run) rather than pg's bare 42P01.
 */
export function sayingNotMigrated(pool: PgQueryable, schema: string): PgQueryable {
  return {
    query: async (text, params) => {
      try {
        return await pool.query(text, params);
      } catch (error) {
        throw notMigratedError(error, schema, 'first') ?? error;
      }
    },
  };
}

/**
 * Checks that the schema holds every migration this version of outboxkit ships. Throws a
 * `StartupError` when it does not, or when Postgres refuses the login or the database;
 * returns quietly when Postgres cannot be reached (the caller connects in the background).
 *
 * A schema whose tables exist without the version table was migrated by a Kysely `Migrator`
 * before outboxkit recorded versions there; it is taken as current.
 *
 * @param where the redacted URL or a description of the pool, for messages.
 */
export async function checkSchema(db: PgQueryable, schema: string, where: string): Promise<void> {
  const tables = outboxTables(schema);
  const needed = (await loadMigrations(schema)).map((m) => m.version);
  let applied: Set<number>;
  try {
    const { rows } = await db.query(
      'SELECT to_regclass($1) AS versions, to_regclass($2) AS outbox',
      [tables.migrations, tables.outbox],
    );
    const found = rows[0] as { versions: string | null; outbox: string | null };
    if (found.versions === null && found.outbox !== null) return;
    if (found.versions === null) {
      throw new StartupError(
        'schema-not-migrated',
        'postgres',
        `schema "${schema}" at ${where} has no outboxkit tables: run \`${migrateCommandFor(schema)}\` (or \`migrate(pool, { schema })\`, or your Migrator with OutboxMigrationProvider) before starting`,
      );
    }
    applied = await appliedVersions(db, schema);
  } catch (error) {
    if (error instanceof StartupError) throw error;
    const misconfigured = databaseMisconfiguration(error, where);
    if (misconfigured) throw misconfigured;
    return;
  }
  const missing = needed.filter((v) => !applied.has(v));
  if (missing.length > 0) {
    throw new StartupError(
      'schema-outdated',
      'postgres',
      `schema "${schema}" at ${where} lacks migration${missing.length === 1 ? '' : 's'} ${missing.join(', ')} that this version of outboxkit needs: run \`${migrateCommandFor(schema)}\` before starting`,
    );
  }
}
