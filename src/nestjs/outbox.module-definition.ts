import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { OutboxModuleOptions } from './outbox-module-options.js';

/** Injection token of the module's options, as given to `forRoot` or made by `forRootAsync`. */
export const OUTBOX_MODULE_OPTIONS = Symbol('outboxkit:module-options');

/**
 * `forRoot` and `forRootAsync`, made by Nest's builder. `isGlobal: true` makes `OutboxService`
 * injectable in every module without importing `OutboxModule` again.
 */
export const {
  ConfigurableModuleClass: ConfigurableOutboxModule,
  OPTIONS_TYPE: OUTBOX_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: OUTBOX_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<OutboxModuleOptions>({
  optionsInjectionToken: OUTBOX_MODULE_OPTIONS,
})
  .setClassMethodName('forRoot')
  .setExtras({ isGlobal: false }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();

/** What `OutboxModule.forRootAsync` takes: `imports`, `inject` and `useFactory`, or a class. */
export type OutboxModuleAsyncOptions = typeof OUTBOX_ASYNC_OPTIONS_TYPE;

/** What `OutboxModule.forRoot` takes: the module options, and `isGlobal`. */
export type OutboxModuleRootOptions = typeof OUTBOX_OPTIONS_TYPE;
