import { StartupError } from '../errors/startup-error.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { quoteIdentifier } from '../sql/quote-identifier.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { databaseMisconfiguration } from './misconfiguration.js';

/** One privilege on one of outboxkit's tables. */
export interface TablePrivilege {
  readonly table: 'outbox' | 'parked' | 'processed';
  readonly privilege: 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE';
}

/** What the relay's statements need: the claim locks rows (UPDATE), the settle deletes or parks. */
export const RELAY_PRIVILEGES: readonly TablePrivilege[] = [
  { table: 'outbox', privilege: 'SELECT' },
  { table: 'outbox', privilege: 'UPDATE' },
  { table: 'outbox', privilege: 'DELETE' },
  { table: 'parked', privilege: 'INSERT' },
];

/** What a consumer's claim needs: it inserts the keys and, in a batch, reads back which. */
export const CONSUMER_PRIVILEGES: readonly TablePrivilege[] = [
  { table: 'processed', privilege: 'INSERT' },
  { table: 'processed', privilege: 'SELECT' },
];

/** Where the list of grants is, for messages. */
export const PRIVILEGES_DOC = 'docs/operations.md, "Database roles"';

/**
 * Fails with a `StartupError` naming each privilege the session's role lacks, with the GRANT
 * that gives it. Without them the relay would publish rows it cannot delete, again and again,
 * and a consumer could not record a key. Returns quietly when Postgres cannot be reached.
 * Run after `checkSchema`: the tables must exist.
 */
export async function checkPrivileges(
  db: PgQueryable,
  schema: string,
  where: string,
  needed: readonly TablePrivilege[],
): Promise<void> {
  const tables = outboxTables(schema);
  const names = needed.map((n) => tables[n.table]);
  const as = (name: string) => quoteIdentifier(name, 'role');
  let found: { role: string; usage: boolean; granted: boolean[] | null };
  try {
    // One round trip. The tables are looked at only with USAGE on the schema, without which
    // naming them fails; a table's name is parsed as SQL (hence quoted), the schema's is not.
    const { rows } = await db.query(
      `SELECT current_user AS role, has_schema_privilege($1, 'USAGE') AS usage,
              CASE WHEN has_schema_privilege($1, 'USAGE') THEN
                ARRAY(SELECT has_table_privilege(t, p)
                        FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS n(t, p, i)
                       ORDER BY i)
              END AS granted`,
      [schema, names, needed.map((n) => n.privilege)],
    );
    found = rows[0] as typeof found;
  } catch (error) {
    const misconfigured = databaseMisconfiguration(error, where);
    if (misconfigured) throw misconfigured;
    return;
  }
  const { role, usage, granted } = found;
  if (!usage || granted === null) {
    throw new StartupError(
      'database-privilege-missing',
      'postgres',
      `the role ${JSON.stringify(role)} at ${where} lacks USAGE on schema ${tables.schema}: run \`GRANT USAGE ON SCHEMA ${tables.schema} TO ${as(role)}\` (with the table privileges ${PRIVILEGES_DOC} lists)`,
    );
  }
  const missing = needed.filter((_, i) => !granted[i]);
  if (missing.length === 0) return;
  const grants = missing.map((m) => `GRANT ${m.privilege} ON ${tables[m.table]} TO ${as(role)}`);
  throw new StartupError(
    'database-privilege-missing',
    'postgres',
    `the role ${JSON.stringify(role)} at ${where} lacks ${missing.map((m) => `${m.privilege} on ${tables[m.table]}`).join(', ')}: run \`${grants.join('; ')}\` (${PRIVILEGES_DOC})`,
  );
}
