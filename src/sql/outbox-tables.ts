import { ConfigurationError } from '../errors/configuration-error.js';
import { quoteIdentifier } from './quote-identifier.js';

/** The quoted, schema-qualified names of outboxkit's tables in one schema. */
export interface OutboxTables {
  readonly schemaName: string;
  readonly schema: string;
  readonly outbox: string;
  readonly parked: string;
  readonly processed: string;
  readonly migrations: string;
  /** The LISTEN/NOTIFY channel that wakes the relay, quoted for LISTEN. */
  readonly notifyChannel: string;
  /** The same channel unquoted, as `pg_notify` takes it. */
  readonly notifyChannelName: string;
}

export const DEFAULT_SCHEMA = 'outboxkit';

/** Leaves room for the `outboxkit:` prefix of the notify channel within Postgres' 63-byte names. */
const MAX_SCHEMA_LENGTH = 53;

export function outboxTables(schemaName: string = DEFAULT_SCHEMA): OutboxTables {
  // Before the identifier's own check, whose "1 to 63 characters" would be wrong here (a
  // schema that is no string included).
  if (
    typeof schemaName !== 'string' ||
    schemaName.length === 0 ||
    Buffer.byteLength(schemaName) > MAX_SCHEMA_LENGTH
  ) {
    throw new ConfigurationError(
      'schema',
      `must be a name of 1 to ${MAX_SCHEMA_LENGTH} bytes (the relay's notify channel adds \`outboxkit:\` to it within Postgres' 63), got ${JSON.stringify(schemaName)}`,
    );
  }
  const schema = quoteIdentifier(schemaName);
  return Object.freeze({
    schemaName,
    schema,
    outbox: `${schema}.outbox`,
    parked: `${schema}.outbox_parked`,
    processed: `${schema}.processed_messages`,
    migrations: `${schema}.outboxkit_migrations`,
    notifyChannel: quoteIdentifier(`outboxkit:${schemaName}`),
    notifyChannelName: `outboxkit:${schemaName}`,
  });
}
