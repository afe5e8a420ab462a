export type {
  ConsumeContext,
  ConsumerDefinition,
  ExchangeType,
  IsolationLevel,
  MessageInfo,
  QueueType,
  RetryPolicy,
} from './consumer-definition.js';
export { defineConsumer } from './consumer-definition.js';
export { ConsumerHost, type ConsumerHostOptions } from './consumer-host.js';
export type { ConsumerStats } from './consumer-stats.js';
export {
  type ConsumerTopology,
  deadLetterQueueName,
  delayQueueName,
  type QueueDeclaration,
  topologyOf,
  topologyQueueNames,
} from './consumer-topology.js';
export { HandlerTimeoutError } from './handler-timeout-error.js';
export { isPermanentError, PermanentError } from './permanent-error.js';
export {
  DEFAULT_RETENTION_MS,
  RetentionCleaner,
  type RetentionCleanerOptions,
  type RetentionOptions,
} from './retention-cleaner.js';
export { TopologyConflictError } from './topology-conflict-error.js';
