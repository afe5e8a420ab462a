/**
 * The NestJS adapter of outboxkit: `import { OutboxModule } from 'outboxkit/nestjs'`. A thin
 * layer over the core's writer, relay and consumer host; the health indicator for
 * `@nestjs/terminus` is in `outboxkit/nestjs/health`, so terminus stays optional.
 */
export type { ConsumeContext, MessageInfo, RetryPolicy } from '../consumer/consumer-definition.js';
export type { PayloadValidator, StandardSchema } from '../consumer/payload-validator.js';
export { PermanentError } from '../consumer/permanent-error.js';
export type { KyselyInstance, KyselyQueryRunner } from '../sql/kysely-shape.js';
export {
  defineMessage,
  type MessageDefinition,
  type PayloadOf,
  type WrittenPayloadOf,
} from './message-definition.js';
export { OutboxModule } from './outbox.module.js';
export {
  OUTBOX_MODULE_OPTIONS,
  type OutboxModuleAsyncOptions,
  type OutboxModuleOptionsFactory,
  type OutboxModuleRootOptions,
} from './outbox.module-definition.js';
export {
  OutboxService,
  type OutboxTransaction,
  type OutboxWriteOptions,
} from './outbox.service.js';
export type { OutboxDashboardSettings } from './outbox-dashboard-settings.js';
export { isOutboxContext, outboxHandlerArguments } from './outbox-execution-context.js';
export { OutboxHandler } from './outbox-handler.decorator.js';
export type { OutboxHandlerOptions } from './outbox-handler.metadata.js';
export type {
  AmbientTransaction,
  OutboxConsumerSettings,
  OutboxModuleExchange,
  OutboxModuleOptions,
  OutboxRelaySettings,
} from './outbox-module-options.js';

/**
 * @deprecated the former name of `OutboxModuleExchange`; the core's `ExchangeDeclaration`
 * (`outboxkit`) is the declaration alone.
 */
export type ExchangeDeclaration = import('./outbox-module-options.js').OutboxModuleExchange;
