export { type AmqpUrls, amqpUrlList } from './amqp/amqp-urls.js';
export * from './consumer/index.js';
export * from './dashboard/index.js';
export * from './dead-letters/index.js';
export { ConfigurationError } from './errors/configuration-error.js';
export { InvalidMessageError, type InvalidMessageReason } from './errors/invalid-message-error.js';
export { NotInTransactionError } from './errors/not-in-transaction-error.js';
export { OutboxkitError } from './errors/outboxkit-error.js';
export * from './metrics/index.js';
export { OutboxMigrationProvider } from './migrate/kysely-migration-provider.js';
export { type MigrateOptions, type MigrateResult, migrate } from './migrate/migrate.js';
export { loadMigrations, MIGRATIONS_DIR, type Migration } from './migrate/migration-files.js';
export { OutboxRelay } from './relay/outbox-relay.js';
export type { RelayOptions } from './relay/relay-options.js';
export type { RelayStats } from './relay/relay-stats.js';
export { DEFAULT_SCHEMA } from './sql/outbox-tables.js';
export type { PgQueryable, TransactionLike } from './sql/sql-executor.js';
export {
  type ExchangeStatus,
  type OutboxCounts,
  type OutboxStatus,
  type OutboxStatusOptions,
  outboxStatus,
} from './status/outbox-status.js';
export type { BackoffPolicy } from './util/backoff.js';
export { consoleLogger, type OutboxLogger, silentLogger } from './util/logger.js';
export { uuidv7 } from './util/uuidv7.js';
export {
  CAUSATION_ID_HEADER,
  type HeaderValue,
  type JsonValue,
  ORDERING_KEY_HEADER,
  type OutboxMessage,
} from './writer/outbox-message.js';
export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  OutboxWriter,
  type OutboxWriterOptions,
} from './writer/outbox-writer.js';
