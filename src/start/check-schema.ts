import { isPrivilegeRefusal, sqlStateOf } from '../consumer/database-errors.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StartupError } from '../errors/startup-error.js';
import { appliedVersions, SHIPPED_VERSIONS } from '../migrate/migration-files.js';
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
/** SQLSTATE undefined_column. */
const UNDEFINED_COLUMN = '42703';

/** Where the advice to migrate points besides the CLI. */
const OTHER_WAYS =
  '(or `migrate(pool, { schema })`, or your Kysely Migrator with OutboxMigrationProvider)';

/**
 * The outbox columns later migrations add, by the version that adds them: a schema whose tables
 * were made without the version table (plain SQL from `migrations/`) is checked by them.
 */
const ADDED_COLUMNS: readonly { version: number; column: string }[] = [
  { version: 5, column: 'rejections' },
];

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
 * `notMigratedError`, or for a statement of the relay's (which names only outboxkit's tables)
 * that failed on a column a later migration adds, the error saying to migrate: the start could
 * not see it (Postgres was down then, or the schema has no version table).
 */
export function relaySchemaError(
  error: unknown,
  schema: string,
  then: string,
): OutboxkitError | undefined {
  const notMigrated = notMigratedError(error, schema, then);
  if (notMigrated || sqlStateOf(error) !== UNDEFINED_COLUMN) return notMigrated;
  return new OutboxkitError(
    'schema-outdated',
    `schema ${JSON.stringify(schema)} lacks a column this version of outboxkit needs (a migration not applied): run \`${migrateCommandFor(schema)}\` ${OTHER_WAYS} ${then}`,
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
  let applied: Set<number>;
  try {
    const { rows } = await db.query(
      'SELECT to_regclass($1) AS versions, to_regclass($2) AS outbox',
      [tables.migrations, tables.outbox],
    );
    const found = rows[0] as { versions: string | null; outbox: string | null };
    if (found.versions === null && found.outbox !== null) {
      await checkAddedColumns(db, schema, where);
      return;
    }
    if (found.versions === null) {
      throw new StartupError(
        'schema-not-migrated',
        'postgres',
        `schema "${schema}" at ${where} has no outboxkit tables: run \`${migrateCommandFor(schema)}\` ${OTHER_WAYS} before starting`,
      );
    }
    try {
      applied = await appliedVersions(db, schema);
    } catch (error) {
      // A runtime role need not read the version table: the columns tell the migrations.
      if (!isPrivilegeRefusal(error)) throw error;
      await checkAddedColumns(db, schema, where);
      return;
    }
  } catch (error) {
    if (error instanceof StartupError) throw error;
    // No USAGE on the schema: `checkPrivileges`, which runs next, names the GRANT.
    if (isPrivilegeRefusal(error)) return;
    const misconfigured = databaseMisconfiguration(error, where);
    if (misconfigured) throw misconfigured;
    return;
  }
  const missing = SHIPPED_VERSIONS.filter((v) => !applied.has(v));
  if (missing.length > 0) {
    throw new StartupError(
      'schema-outdated',
      'postgres',
      `schema "${schema}" at ${where} lacks migration${missing.length === 1 ? '' : 's'} ${missing.join(', ')} that this version of outboxkit needs: run \`${migrateCommandFor(schema)}\` ${OTHER_WAYS} before starting`,
    );
  }
}

/**
 * The later migrations whose columns the outbox of a schema without the version table lacks:
 * every other migration is in it.
 */
export async function columnsMissing(
  db: PgQueryable,
  schema: string,
): Promise<readonly { version: number; column: string }[]> {
  const { rows } = await db.query(
    `SELECT attname FROM pg_attribute
      WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
    [outboxTables(schema).outbox],
  );
  const columns = new Set((rows as { attname: string }[]).map((r) => r.attname));
  return ADDED_COLUMNS.filter((a) => !columns.has(a.column));
}

/**
 * A schema with outboxkit's tables and no version table was made from the SQL files (or by a
 * Kysely Migrator before versions were recorded): its migrations are told by what they added.
 */
async function checkAddedColumns(db: PgQueryable, schema: string, where: string): Promise<void> {
  const missing = await columnsMissing(db, schema);
  if (missing.length === 0) return;
  throw new StartupError(
    'schema-outdated',
    'postgres',
    `schema "${schema}" at ${where} lacks migration${missing.length === 1 ? '' : 's'} ${missing.map((m) => m.version).join(', ')} (its outbox has no ${missing.map((m) => `\`${m.column}\``).join(', ')} column): run \`${migrateCommandFor(schema)}\` ${OTHER_WAYS}, or apply the SQL file${missing.length === 1 ? '' : 's'} from migrations/ in a transaction, with \`{{schema}}\` replaced by the schema's quoted name (\`sed 's/{{schema}}/"${schema}"/g' FILE | psql -1 -f -\`), before starting`,
  );
}
