import type { Pool } from 'pg';
import { pgPool } from '../options/database-handle.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { ADVISORY_LOCK_CLASS } from '../sql/advisory-locks.js';
import { checkoutClient } from '../sql/checkout-client.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { appliedVersions, loadMigrations, versionTableSql } from './migration-files.js';
import { migrationLockTimeout } from './migration-lock-timeout.js';

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
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
      ADVISORY_LOCK_CLASS,
      `migrate:${tables.schemaName}`,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${tables.schema}`);
    await client.query(versionTableSql(tables.schemaName));
    const done = await appliedVersions(client, tables.schemaName);
    const applied: number[] = [];
    for (const m of migrations) {
      if (done.has(m.version)) continue;
      await client.query(m.sql).catch((error: unknown) => {
        throw migrationLockTimeout(error, m, tables.schemaName) ?? error;
      });
      await client.query(`INSERT INTO ${tables.migrations} (version, name) VALUES ($1, $2)`, [
        m.version,
        m.name,
      ]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return { applied };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
