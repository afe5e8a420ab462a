import { sqlStateOf } from '../consumer/database-errors.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import type { Migration } from './migration-files.js';

/** SQLSTATE lock_not_available. */
const LOCK_NOT_AVAILABLE = '55P03';

/**
 * The error for a migration that gave up waiting for its lock (Postgres' 55P03 under the
 * migration's own `lock_timeout`), naming what holds it and what to do; undefined for any other.
 */
export function migrationLockTimeout(
  error: unknown,
  migration: Migration,
  schemaName: string,
): OutboxkitError | undefined {
  if (sqlStateOf(error) !== LOCK_NOT_AVAILABLE) return undefined;
  return new OutboxkitError(
    'migration-lock-timeout',
    `migration ${migration.version} (${migration.name}) could not lock "${schemaName}".outbox within its 5 s: transactions on the outbox hold it (a relay holds its claimed rows until the broker confirms them, so a slow broker makes long ones). Nothing was applied; run the migration again, or stop the relays while it runs`,
    { cause: error },
  );
}
