import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { checkAllowedHostNames } from '../dashboard/allowed-host-names.js';
import { OutboxDashboard } from '../dashboard/outbox-dashboard.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { nestedOptions } from '../options/nested-options.js';
import {
  DASHBOARD_SETTINGS_OPTION_NAMES,
  OUTBOX_DASHBOARD_SETTINGS,
  type OutboxDashboardSettings,
} from './outbox-dashboard-settings.js';
import { OutboxRuntime } from './outbox-runtime.js';

/**
 * Holds the core `OutboxDashboard` of one application. It is made at the first request, once
 * the outbox has started: the handlers' queues, whose dead letters it shows by default, are
 * known only then. The settings are checked when the module starts.
 */
@Injectable()
export class OutboxDashboardHost implements OnApplicationShutdown {
  readonly #runtime: OutboxRuntime;
  readonly #settings: OutboxDashboardSettings;
  #dashboard: OutboxDashboard | undefined;

  constructor(
    @Inject(OutboxRuntime) runtime: OutboxRuntime,
    @Inject(OUTBOX_DASHBOARD_SETTINGS) settings: OutboxDashboardSettings,
  ) {
    this.#runtime = runtime;
    this.#settings = checkSettings(settings);
  }

  get dashboard(): OutboxDashboard {
    if (!this.#dashboard) {
      const { options, topologies } = this.#runtime;
      this.#dashboard = new OutboxDashboard({
        pool: this.#runtime.queryable,
        schema: options.schema,
        allowReplay: this.#settings.allowReplay === true,
        queues: this.#settings.queues ?? topologies.map((t) => t.queue.name),
        amqpUrl: options.amqpUrl,
        ...(options.amqpTls && { amqpTls: options.amqpTls }),
        // A foreign domain pointed at the application (DNS rebinding) names itself in Host, so
        // only the loopback names and those the application gives are answered.
        allowedHosts: this.#settings.allowedHosts,
        trustForwardedHost: this.#settings.trustForwardedHost === true,
        logger: options.logger,
      });
    }
    return this.#dashboard;
  }

  async onApplicationShutdown(): Promise<void> {
    const dashboard = this.#dashboard;
    this.#dashboard = undefined;
    await dashboard?.close();
  }
}

/**
 * Refuses settings that leave replay and purge open to anyone who reaches the application's
 * port: the dashboard has no login of its own.
 */
function checkSettings(given: OutboxDashboardSettings): OutboxDashboardSettings {
  const settings =
    nestedOptions(
      'dashboard',
      given,
      DASHBOARD_SETTINGS_OPTION_NAMES,
      "OutboxModule's dashboard",
      '`true`',
    ) ?? {};
  booleanOption('dashboard.allowReplay', settings.allowReplay, false);
  booleanOption('dashboard.trustForwardedHost', settings.trustForwardedHost, false);
  if (settings.allowReplay === true && (settings.guards ?? []).length === 0) {
    throw new ConfigurationError(
      'dashboard.allowReplay',
      'needs a guard: anyone who reaches the application could otherwise replay and purge. ' +
        "Put the application's authentication in `dashboard.guards` (a global guard counts " +
        'only when named there too), or leave `allowReplay` off for a read-only dashboard',
    );
  }
  if (settings.allowedHosts?.some((h) => typeof h !== 'string' || h.length === 0)) {
    throw new ConfigurationError(
      'dashboard.allowedHosts',
      'must be host names such as outbox.example.com, without port',
    );
  }
  checkAllowedHostNames('dashboard.allowedHosts', settings.allowedHosts ?? []);
  return settings;
}
