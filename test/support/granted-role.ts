import type pg from 'pg';
import { DATABASE_URL } from './env.js';
import { uniqueName } from './test-database.js';

/**
 * A plain login role (not a superuser, which Postgres holds to no connection limit and no
 * grant) with what a relay and a consumer need on `schema`.
 */
export interface GrantedRole {
  readonly name: string;
  /** A connection string that logs in as the role. */
  readonly url: string;
  /** Drops the role, its grants and its sessions. */
  drop(): Promise<void>;
}

/** @param attributes what `CREATE ROLE ... LOGIN` is given besides, such as `CONNECTION LIMIT 3`. */
export async function grantedRole(
  admin: pg.Pool,
  schema: string,
  prefix: string,
  attributes = '',
): Promise<GrantedRole> {
  const name = uniqueName(prefix);
  await admin.query(`CREATE ROLE ${name} LOGIN ${attributes}`);
  await admin.query(`GRANT USAGE ON SCHEMA "${schema}" TO ${name}`);
  await admin.query(
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "${schema}" TO ${name}`,
  );
  await admin.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA "${schema}" TO ${name}`);
  const url = new URL(DATABASE_URL);
  url.username = name;
  url.password = '';
  return {
    name,
    url: url.toString(),
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
