import { isPrivilegeRefusal } from '../consumer/database-errors.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * The error for a migration Postgres refused for want of a privilege, naming the role and who
 * may run it; undefined for any other error.
 */
export function migrationPrivilegeMissing(
  error: unknown,
  schemaName: string,
  role: string,
): OutboxkitError | undefined {
  if (!isPrivilegeRefusal(error)) return undefined;
  return new OutboxkitError(
    'migration-privilege-missing',
    `migrating schema ${JSON.stringify(schemaName)}: the role ${JSON.stringify(role)} may not (${error instanceof Error ? error.message : 'permission denied'}). Run the migration as the schema's owner, or as a role with CREATE on the database while the schema does not exist yet (docs/operations.md, "Database roles"). Nothing was applied`,
    { cause: error },
  );
}
