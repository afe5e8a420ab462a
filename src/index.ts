export { type DeclareExchangesOptions, declareExchanges } from './amqp/declare-exchanges.js';
export type { ExchangeDeclaration } from './amqp/exchange-declaration.js';
/**
 * outboxkit's core: what a service needs to write, relay and consume messages. The tools have
 * entry points of their own (`outboxkit/dashboard`, `outboxkit/dead-letters`,
 * `outboxkit/metrics`, `outboxkit/status`); docs/api.md lists every entry point's exports, and
 * test/public-exports.test.ts holds this file to that list.
 */

export type { AmqpUrls } from './amqp/amqp-urls.js';
export {
  type ConsumeContext,
  type ConsumerDefinition,
  defineConsumer,
  type ExchangeType,
  type IsolationLevel,
  type MessageInfo,
  type QueueType,
  type RetryPolicy,
} from './consumer/consumer-definition.js';
export { ConsumerHost, type ConsumerHostOptions } from './consumer/consumer-host.js';
export type { ConsumerStats } from './consumer/consumer-stats.js';
export type { ConsumerTopology } from './consumer/consumer-topology.js';
export type {
  ConsumerTransaction,
  ConsumerTransactionOptions,
  ConsumerTransactions,
  TxOf,
} from './consumer/consumer-transactions.js';
export { HandlerStoppedError } from './consumer/handler-stopped-error.js';
export { HandlerTimeoutError } from './consumer/handler-timeout-error.js';
export type { HandlerFailure } from './consumer/last-failure.js';
export { PartitionCountChangedError } from './consumer/partition-count-changed-error.js';
export { PartitionsPluginMissingError } from './consumer/partitions-plugin-missing-error.js';
export type { PayloadValidator, StandardSchema } from './consumer/payload-validator.js';
export { isPermanentError, PermanentError } from './consumer/permanent-error.js';
export {
  type ResizePartitionsOptions,
  type ResizePartitionsResult,
  resizePartitions,
} from './consumer/resize-partitions.js';
export {
  RetentionCleaner,
  type RetentionCleanerOptions,
  type RetentionOptions,
} from './consumer/retention-cleaner.js';
export { TopologyConflictError } from './consumer/topology-conflict-error.js';
export { TransactionAbortedError } from './consumer/transaction-aborted-error.js';
export { TransactionClosedError } from './consumer/transaction-closed-error.js';
export { TransactionControlError } from './consumer/transaction-control-error.js';
export { UnpartitionedQueueError } from './consumer/unpartitioned-queue-error.js';
export { ConfigurationError } from './errors/configuration-error.js';
export { InvalidMessageError, type InvalidMessageReason } from './errors/invalid-message-error.js';
export { NotInTransactionError } from './errors/not-in-transaction-error.js';
export { OutboxkitError } from './errors/outboxkit-error.js';
export { StartupError, type StartupErrorCode } from './errors/startup-error.js';
export { StateError } from './errors/state-error.js';
export { combineMigrationProviders } from './migrate/combine-migration-providers.js';
export {
  OutboxMigrationProvider,
  type OutboxMigrationProviderOptions,
} from './migrate/kysely-migration-provider.js';
export { type MigrateOptions, type MigrateResult, migrate } from './migrate/migrate.js';
export type { Pem, TlsOptions } from './options/tls-options.js';
export { MAX_BUSINESS_KEY_BYTES } from './protocol/business-key.js';
export {
  type DeadLetterReason,
  DROPPED_HEADERS_HEADER,
  OUTBOXKIT_HEADERS,
  REPLAYED_AT_HEADER,
} from './protocol/dead-letter-headers.js';
export { CAUSATION_ID_HEADER, ORDERING_KEY_HEADER } from './protocol/message-headers.js';
export type { RelayDatabaseProblem } from './relay/database-health.js';
export { OutboxRelay } from './relay/outbox-relay.js';
export type {
  RelayOptions,
  RelayRetryPolicy,
  ResolvedRelayOptions,
} from './relay/relay-options.js';
export type { RelayStats } from './relay/relay-stats.js';
export type {
  KyselyInstance,
  KyselyQueryRunner,
  KyselyTransactionLike,
} from './sql/kysely-shape.js';
export type { PgQueryable, TransactionLike } from './sql/sql-executor.js';
export type { BackoffPolicy } from './util/backoff.js';
export { consoleLogger, type OutboxLogger, silentLogger } from './util/logger.js';
export type { HeaderValue, JsonValue, OutboxMessage } from './writer/outbox-message.js';
export { OutboxWriter, type OutboxWriterOptions } from './writer/outbox-writer.js';
