import { type DynamicModule, Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { ConfigurationError } from '../errors/configuration-error.js';
import { describeValue } from '../util/describe-value.js';
import { HandlerExplorer } from './handler-explorer.js';
import { HandlerMetadataAccessor } from './handler-metadata-accessor.js';
import { outboxLoggerFrom } from './nest-logger-adapter.js';
import {
  ConfigurableOutboxModule,
  OUTBOX_MODULE_OPTIONS,
  type OutboxModuleAsyncOptions,
  type OutboxModuleRootOptions,
} from './outbox.module-definition.js';
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
// Nothing on the class itself: `imports: [OutboxModule]` in a feature module, beside a global
// `forRoot`, is then an empty import rather than a second runtime without its options (Nest's
// "can't resolve dependencies of the OutboxRuntime").
@Module({})
export class OutboxModule extends ConfigurableOutboxModule {
  static override forRoot(options: OutboxModuleRootOptions): DynamicModule {
    return withRuntime(ConfigurableOutboxModule.forRoot.call(OutboxModule, options));
  }

  /**
   * Nest's `forRootAsync`, after checking the shape of what it takes: without it, a call with
   * nothing, or with a `useFactory` that is not a function, fails inside Nest with a `TypeError`
   * or an `UndefinedDependencyException` that does not say what is missing.
   */
  static override forRootAsync(options: OutboxModuleAsyncOptions): DynamicModule {
    const given = options as Partial<Record<'useFactory' | 'useClass' | 'useExisting', unknown>>;
    const ways = ['useFactory', 'useClass', 'useExisting'] as const;
    if (given === null || typeof given !== 'object' || Array.isArray(given)) {
      throw new ConfigurationError(
        'options',
        `OutboxModule.forRootAsync takes { imports?, inject?, useFactory } (or useClass, useExisting); got ${describeValue(given)}`,
      );
    }
    const set = ways.filter((way) => given[way] !== undefined);
    if (set.length !== 1) {
      throw new ConfigurationError(
        set[1] ?? 'useFactory',
        `OutboxModule.forRootAsync needs exactly one of useFactory, useClass or useExisting; got ${set.length === 0 ? 'none (options given as they are go to OutboxModule.forRoot)' : set.join(' and ')}`,
      );
    }
    const way = set[0]!;
    if (typeof given[way] !== 'function') {
      throw new ConfigurationError(
        way,
        `must be ${way === 'useFactory' ? 'a function returning the module options' : 'a class'}, got ${describeValue(given[way])}`,
      );
    }
    // Called on OutboxModule: Nest's builder makes the module of the class it is called on, and
    // the base class has none of this module's providers.
    return withRuntime(ConfigurableOutboxModule.forRootAsync.call(OutboxModule, options));
  }
}

/** The module's own providers, added to what Nest's builder made of `forRoot`'s options. */
function withRuntime(definition: DynamicModule): DynamicModule {
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [
      ...(definition.providers ?? []),
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
    exports: [...(definition.exports ?? []), OutboxService],
  };
}
