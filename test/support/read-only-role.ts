import type pg from 'pg';
import { type GrantedRole, grantedRole } from './granted-role.js';

/**
 * A login role whose sessions start read-only (`ALTER ROLE ... SET default_transaction_read_only
 * = on`), with what a relay and a consumer need on `schema`: a session keeps the setting it
 * started with, as one opened before an `ALTER DATABASE ... RESET`, or on a standby, does.
 */
export interface ReadOnlyRole extends GrantedRole {
  /** New sessions of the role are writable; those open keep read-only. */
  reset(): Promise<void>;
  /** New sessions of the role are read-only again. */
  readOnlyAgain(): Promise<void>;
}

export async function readOnlyRole(admin: pg.Pool, schema: string): Promise<ReadOnlyRole> {
  const role = await grantedRole(admin, schema, 'ro');
  await admin.query(`ALTER ROLE ${role.name} SET default_transaction_read_only = on`);
  return {
    ...role,
    async reset() {
      await admin.query(`ALTER ROLE ${role.name} RESET default_transaction_read_only`);
    },
    async readOnlyAgain() {
      await admin.query(`ALTER ROLE ${role.name} SET default_transaction_read_only = on`);
    },
  };
}
