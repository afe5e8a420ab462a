import { type DynamicModule, type LoggerService, Module } from '@nestjs/common';
import type { Kysely } from 'kysely';
import type { Registry } from 'prom-client';
import { OutboxModule } from '../../src/nestjs/index.js';
import { DatabaseModule, type ExampleDatabase, KYSELY } from './database.js';
import { EXAMPLE_CONFIG, type ExampleConfig } from './example-config.js';
import { InventoryModule } from './inventory/inventory.module.js';
import { OrdersModule } from './orders/orders.module.js';
import { METRICS_REGISTRY, TelemetryModule } from './telemetry.module.js';

const EXAMPLE_LOGGER = Symbol('example logger');

/** Holds the run's configuration and logger, for every module to inject. */
@Module({})
class ExampleConfigModule {}

/**
 * The example application: the order service and the inventory service as two Nest modules in
 * one app, talking only through messages that go through the outbox.
 */
@Module({})
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module class with a dynamic-module factory
export class AppModule {
  static register(config: ExampleConfig, logger: LoggerService): DynamicModule {
    return {
      module: AppModule,
      imports: [
        {
          module: ExampleConfigModule,
          global: true,
          providers: [
            { provide: EXAMPLE_CONFIG, useValue: config },
            { provide: EXAMPLE_LOGGER, useValue: logger },
          ],
          exports: [EXAMPLE_CONFIG, EXAMPLE_LOGGER],
        },
        DatabaseModule,
        TelemetryModule,
        OutboxModule.forRootAsync({
          isGlobal: true,
          inject: [KYSELY, EXAMPLE_CONFIG, EXAMPLE_LOGGER, METRICS_REGISTRY],
          useFactory: (
            db: Kysely<ExampleDatabase>,
            c: ExampleConfig,
            log: LoggerService,
            registry: Registry,
          ) => ({
            // Handlers run their transactions on the application's own Kysely instance...
            db,
            // ...while the relay makes a small pool of its own from the URL.
            databaseUrl: c.databaseUrl,
            amqpUrl: c.amqpUrl,
            schema: c.schema,
            prefix: c.prefix,
            migrate: true,
            logger: log,
            // outboxkit's metrics join the application's registry, served on GET /metrics.
            prometheusRegistry: registry,
          }),
        }),
        OrdersModule,
        InventoryModule,
      ],
    };
  }
}
