import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { HandlerExplorer } from './handler-explorer.js';
import { HandlerMetadataAccessor } from './handler-metadata-accessor.js';
import { outboxLoggerFrom } from './nest-logger-adapter.js';
import { ConfigurableOutboxModule, OUTBOX_MODULE_OPTIONS } from './outbox.module-definition.js';
import { OutboxService } from './outbox.service.js';
import type { OutboxModuleOptions } from './outbox-module-options.js';
import { OutboxRegistrar } from './outbox-registrar.js';
import { OutboxRuntime } from './outbox-runtime.js';
import { resolveModuleOptions } from './resolve-module-options.js';

/**
 * The transactional outbox for a Nest application: `OutboxService` writes messages in the
 * caller's transaction, the relay publishes them, and `@OutboxHandler` methods consume them
 * exactly once per business key. Import it once, with `forRoot` or `forRootAsync`.
 *
 * @example
 * ```ts
 * @Module({
 *   imports: [
 *     OutboxModule.forRootAsync({
 *       isGlobal: true,
 *       imports: [DatabaseModule],
 *       inject: [KYSELY],
 *       useFactory: (db: Kysely<Database>) => ({
 *         db,
 *         databaseUrl: process.env.DATABASE_URL,
 *         amqpUrl: process.env.AMQP_URL!,
 *       }),
 *     }),
 *   ],
 * })
 * export class AppModule {}
 * ```
 */
@Module({
  imports: [DiscoveryModule],
  providers: [
    {
      provide: OutboxRuntime,
      inject: [OUTBOX_MODULE_OPTIONS],
      useFactory: (options: OutboxModuleOptions) =>
        new OutboxRuntime(resolveModuleOptions(options, outboxLoggerFrom(options?.logger))),
    },
    OutboxService,
    HandlerMetadataAccessor,
    HandlerExplorer,
    OutboxRegistrar,
  ],
  exports: [OutboxService],
})
export class OutboxModule extends ConfigurableOutboxModule {}
