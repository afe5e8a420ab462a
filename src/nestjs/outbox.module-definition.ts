import { ConfigurableModuleBuilder } from '@nestjs/common';
import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { describeValue } from '../util/describe-value.js';
import { outboxDashboardController } from './outbox-dashboard.controller.js';
import { OutboxDashboardHost } from './outbox-dashboard-host.js';
import {
  DEFAULT_DASHBOARD_PATH,
  OUTBOX_DASHBOARD_SETTINGS,
  type OutboxDashboardSettings,
} from './outbox-dashboard-settings.js';
import type { OutboxModuleOptions } from './outbox-module-options.js';

/** Injection token of the module's options, as given to `forRoot` or made by `forRootAsync`. */
export const OUTBOX_MODULE_OPTIONS = Symbol('outboxkit:module-options');

/** What `forRoot` and `forRootAsync` take beside the module options. */
interface OutboxModuleExtras {
  /** Make `OutboxService` injectable in every module without importing `OutboxModule` again. */
  isGlobal?: boolean | undefined;
  /**
   * Serve outboxkit's web dashboard (`true` for the defaults: read-only, at
   * `outbox/dashboard`). Default off.
   */
  dashboard?: boolean | OutboxDashboardSettings | undefined;
}

/**
 * `forRoot` and `forRootAsync`, made by Nest's builder. `isGlobal: true` makes `OutboxService`
 * injectable in every module without importing `OutboxModule` again; `dashboard` mounts the
 * web dashboard's controller.
 */
export const {
  ConfigurableModuleClass: ConfigurableOutboxModule,
  OPTIONS_TYPE: OUTBOX_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: OUTBOX_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<OutboxModuleOptions>({
  optionsInjectionToken: OUTBOX_MODULE_OPTIONS,
})
  .setClassMethodName('forRoot')
  // `dashboard` listed, though undefined: Nest's builder then keeps it out of `forRoot`'s
  // options, so one that a `forRootAsync` factory returns can be refused (it would be ignored).
  .setExtras<OutboxModuleExtras>(
    { isGlobal: false, dashboard: undefined },
    (definition, extras) => {
      // Read here, when the module is imported: `isGlobal: 'yes'` would otherwise be taken as true.
      const global = booleanOption('isGlobal', extras.isGlobal, false);
      if (extras.dashboard === undefined || extras.dashboard === false) {
        return { ...definition, global };
      }
      const settings = extras.dashboard === true ? {} : extras.dashboard;
      const path: unknown = (settings as { path?: unknown } | null)?.path;
      if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
        throw new ConfigurationError(
          'dashboard.path',
          `must be the route to serve the dashboard under, such as 'outbox/dashboard'; got ${describeValue(path)}`,
        );
      }
      return {
        ...definition,
        global,
        controllers: [
          ...(definition.controllers ?? []),
          outboxDashboardController(settings.path ?? DEFAULT_DASHBOARD_PATH, settings.guards),
        ],
        providers: [
          ...(definition.providers ?? []),
          { provide: OUTBOX_DASHBOARD_SETTINGS, useValue: settings },
          OutboxDashboardHost,
        ],
      };
    },
  )
  .build();

/** What `OutboxModule.forRootAsync` takes: `imports`, `inject` and `useFactory`, or a class. */
export type OutboxModuleAsyncOptions = typeof OUTBOX_ASYNC_OPTIONS_TYPE;

/**
 * A provider that makes the module's options, for `forRootAsync({ useClass })` or
 * `forRootAsync({ useExisting })`: Nest calls its `create()` once, at start.
 */
export interface OutboxModuleOptionsFactory {
  create(): OutboxModuleOptions | Promise<OutboxModuleOptions>;
}

/** What `OutboxModule.forRoot` takes: the module options, and `isGlobal`. */
export type OutboxModuleRootOptions = typeof OUTBOX_OPTIONS_TYPE;
