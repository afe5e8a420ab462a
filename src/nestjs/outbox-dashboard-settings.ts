import type { CanActivate, Type } from '@nestjs/common';
import { optionNames } from '../options/option-names.js';

/**
 * The `dashboard` extra of `OutboxModule.forRoot` and `forRootAsync`: mounts outboxkit's web
 * dashboard (backlog, rates, parked rows, the handlers' dead letters) in the application.
 * Given at the call, not by the async factory, since Nest fixes an application's routes before
 * any factory runs.
 */
export interface OutboxDashboardSettings {
  /** The route the page is served under. Default `outbox/dashboard`. */
  readonly path?: string | undefined;
  /**
   * Offer replay and purge of parked rows and dead letters. Default `false`: read-only, and the
   * replay and purge endpoints answer 403. Needs `guards`: the module refuses to start with
   * replay allowed and no guard (a `ConfigurationError`).
   */
  readonly allowReplay?: boolean | undefined;
  /**
   * Consumers' queues whose dead letters (`<queue>.dlq`) the page shows, by their full names.
   * Default: the queues of this application's `@OutboxHandler`s.
   */
  readonly queues?: readonly string[] | undefined;
  /**
   * Guards run before every dashboard request, as `@UseGuards` would: the dashboard has no login
   * of its own, so put the application's authentication here. Global guards apply too, but
   * `allowReplay` needs at least one guard named here.
   */
  readonly guards?: ReadonlyArray<Type<CanActivate> | CanActivate> | undefined;
  /**
   * Host names (as in the `Host` header, without port) the dashboard answers to, besides the
   * loopback names (`localhost`, `127.0.0.1`, `[::1]`), which it always answers to. Requests
   * addressed to any other get 403, which stops a foreign domain pointed at the application
   * (DNS rebinding) from reading the page or replaying. Default: none, the loopback names only;
   * name the host the dashboard is reached by, such as `['ops.example.com']`.
   */
  readonly allowedHosts?: readonly string[] | undefined;
  /**
   * Behind a reverse proxy that rewrites `Host`: take `X-Forwarded-Host` as the page's own host
   * when checking where a replay or purge came from. Default `false`.
   */
  readonly trustForwardedHost?: boolean | undefined;
}

/** Injection token of the dashboard settings of one `OutboxModule`. */
export const OUTBOX_DASHBOARD_SETTINGS = Symbol('outboxkit:dashboard-settings');

/** The route of the dashboard when `path` is not given. */
export const DEFAULT_DASHBOARD_PATH = 'outbox/dashboard';

/** Every option of `OutboxDashboardSettings`, for the options table in docs/options.md. */
export const DASHBOARD_SETTINGS_OPTION_NAMES = optionNames<OutboxDashboardSettings>()([
  'path',
  'allowReplay',
  'queues',
  'guards',
  'allowedHosts',
  'trustForwardedHost',
]);
