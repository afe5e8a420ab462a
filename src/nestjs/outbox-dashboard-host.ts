import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { OutboxDashboard } from '../dashboard/outbox-dashboard.js';
import {
  OUTBOX_DASHBOARD_SETTINGS,
  type OutboxDashboardSettings,
} from './outbox-dashboard-settings.js';
import { OutboxRuntime } from './outbox-runtime.js';

/**
 * Holds the core `OutboxDashboard` of one application. It is made at the first request, once
 * the outbox has started: the handlers' queues, whose dead letters it shows by default, are
 * known only then.
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
    this.#settings = settings;
  }

  get dashboard(): OutboxDashboard {
    if (!this.#dashboard) {
      const { options, topologies } = this.#runtime;
      this.#dashboard = new OutboxDashboard({
        db: this.#runtime.queryable,
        schema: options.schema,
        readOnly: this.#settings.allowReplay !== true,
        queues: this.#settings.queues ?? topologies.map((t) => t.queue.name),
        // A dead-letter queue is read through one node; the first is the one the others mirror.
        amqpUrl: options.amqpUrl[0]!,
        ...(this.#settings.allowedHosts !== undefined && {
          allowedHosts: this.#settings.allowedHosts,
        }),
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
