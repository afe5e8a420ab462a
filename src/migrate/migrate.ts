import type { Pool } from 'pg';
import { pgPool } from '../options/database-handle.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { ADVISORY_LOCK_CLASS } from '../sql/advisory-locks.js';
import { checkoutClient } from '../sql/checkout-client.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { columnsMissing } from '../start/check-schema.js';
import {
  appliedVersions,
  loadMigrations,
  type Migration,
  versionTableSql,
  withoutSchemaCreation,
} from './migration-files.js';
import { migrationLockTimeout } from './migration-lock-timeout.js';
import { migrationPrivilegeMissing } from './migration-privilege-missing.js';

export interface MigrateOptions {
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
}

/** Every option of `MigrateOptions`. */
export const MIGRATE_OPTION_NAMES = optionNames<MigrateOptions>()(['schema']);

export interface MigrateResult {
  /** Versions applied by this call; empty when the schema was already current. */
  readonly applied: number[];
}

/**
 * Brings the schema to the newest version in one transaction. A transaction-scoped advisory lock
 * serialises concurrent migrators: the second waits, then finds nothing left to do.
 */
export async function migrate(pool: Pool, options?: MigrateOptions): Promise<MigrateResult> {
  // It checks a client out for its transaction: a URL or a Kysely instance cannot do.
  pgPool('pool', pool);
  const { schema } = optionsObject('options', options, MIGRATE_OPTION_NAMES, 'migrate');
  const tables = outboxTables(schema);
  const migrations = await loadMigrations(tables.schemaName);
  // The pool may be the application's: a session that dies mid-migration emits 'error' while
  // the ROLLBACK below waits, and unheard that ends the process. The failed statement reports it.
  const client = await checkoutClient(pool, () => {});
  let role: string | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
      ADVISORY_LOCK_CLASS,
      `migrate:${tables.schemaName}`,
    ]);
    // No DDL where nothing is missing: CREATE ... IF NOT EXISTS still needs the privilege to
    // create, which a role that owns the schema, or the application's role on a current
    // schema, does not have on the database.
    // Tables are looked up only where the role may use the schema: a lookup there fails, and the
    // CREATE that follows then says which role may not.
    const { rows } = await client.query(
      `SELECT current_user AS role, n.oid IS NOT NULL AS schema_exists,
              CASE WHEN usable THEN to_regclass($2) IS NOT NULL ELSE false END AS versions,
              CASE WHEN usable THEN to_regclass($3) IS NOT NULL ELSE false END AS outbox
         FROM (SELECT 1) AS one
         LEFT JOIN pg_namespace n ON n.nspname = $1
         LEFT JOIN LATERAL (SELECT has_schema_privilege(n.oid, 'USAGE') AS usable) AS u ON true`,
      [tables.schemaName, tables.migrations, tables.outbox],
    );
    const found = rows[0] as {
      role: string;
      schema_exists: boolean;
      versions: boolean;
      outbox: boolean;
    };
    role = found.role;
    if (!found.schema_exists) await client.query(`CREATE SCHEMA ${tables.schema}`);
    if (!found.versions) {
      await client.query(versionTableSql(tables.schemaName));
      // Made from the SQL files (or by a Migrator before versions were recorded): the start
      // checks tell its migrations by their columns, and so does this, recording them.
      if (found.outbox) await recordMadeWithoutVersions(client, tables.schemaName, migrations);
    }
    const done = await appliedVersions(client, tables.schemaName);
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      const text = found.schema_exists ? withoutSchemaCreation(m.sql) : m.sql;
      await client.query(text).catch((error: unknown) => {
        throw migrationLockTimeout(error, m, tables.schemaName) ?? error;
      });
      await recordVersion(client, tables.schemaName, m);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return { applied };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw (
      (role !== undefined && migrationPrivilegeMissing(error, tables.schemaName, role)) || error
    );
  } finally {
    client.release();
  }
}

/** Records the migrations a schema without the version table holds, as the start checks tell them. */
async function recordMadeWithoutVersions(
  client: PgQueryable,
  schemaName: string,
  migrations: readonly Migration[],
): Promise<void> {
  const missing = new Set((await columnsMissing(client, schemaName)).map((m) => m.version));
  for (const m of migrations) {
    if (!missing.has(m.version)) await recordVersion(client, schemaName, m);
  }
}

async function recordVersion(client: PgQueryable, schemaName: string, m: Migration): Promise<void> {
  await client.query(
    `INSERT INTO ${outboxTables(schemaName).migrations} (version, name) VALUES ($1, $2)`,
    [m.version, m.name],
  );
}
