import type pg from 'pg';
import { DATABASE_URL } from './env.js';
import { uniqueName } from './test-database.js';

/**
 * A login role whose sessions start read-only (`ALTER ROLE ... SET default_transaction_read_only
 * = on`), with what a relay and a consumer need on `schema`: a session keeps the setting it
 * started with, as one opened before an `ALTER DATABASE ... RESET`, or on a standby, does.
 */
export interface ReadOnlyRole {
  readonly name: string;
  /** A connection string that logs in as the role. */
  readonly url: string;
  /** New sessions of the role are writable; those open keep read-only. */
  reset(): Promise<void>;
  /** New sessions of the role are read-only again. */
  readOnlyAgain(): Promise<void>;
  /** Drops the role, its grants and its sessions. */
  drop(): Promise<void>;
}

export async function readOnlyRole(admin: pg.Pool, schema: string): Promise<ReadOnlyRole> {
  const name = uniqueName('ro');
  await admin.query(`CREATE ROLE ${name} LOGIN`);
  await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${name}`);
  await admin.query(
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO ${name}`,
  );
  await admin.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA "${schema}" TO ${name}`);
  await admin.query(`ALTER ROLE ${name} SET default_transaction_read_only = on`);
  const url = new URL(DATABASE_URL);
  url.username = name;
  url.password = '';
  return {
    name,
    url: url.toString(),
    async reset() {
      await admin.query(`ALTER ROLE ${name} RESET default_transaction_read_only`);
    },
    async readOnlyAgain() {
      await admin.query(`ALTER ROLE ${name} SET default_transaction_read_only = on`);
    },
    async drop() {
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1',
        [name],
      );
      await admin.query(`DROP OWNED BY ${name}`);
      await admin.query(`DROP ROLE ${name}`);
    },
  };
}
