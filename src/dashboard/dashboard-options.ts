import type { AmqpUrls } from '../amqp/amqp-urls.js';
import { optionNames } from '../options/option-names.js';
import type { TlsOptions } from '../options/tls-options.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import type { OutboxLogger } from '../util/logger.js';

/** Options of `OutboxDashboard`. */
export interface OutboxDashboardOptions {
  /** A pg pool (or client) on the outbox database. Not closed by the dashboard. */
  readonly pool: PgQueryable;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /**
   * Offer replay and purge of parked rows and dead letters. Default `false`: replay and purge
   * requests are answered with 403 and the page shows no buttons for them, so anyone who can
   * reach the page can only look.
   */
  readonly allowReplay?: boolean | undefined;
  /**
   * Consumers' queues whose dead-letter queues (`<queue>.dlq`) the page shows, replays and
   * purges. Needs `amqpUrl`. Default none: parked outbox rows only.
   */
  readonly queues?: readonly string[] | undefined;
  /** RabbitMQ URL, or several nodes' URLs tried in turn, for `queues`. Never shown on the page. */
  readonly amqpUrl?: AmqpUrls | undefined;
  /** TLS settings (CA, client certificate and key) for `amqps://` URLs. Default Node's. */
  readonly amqpTls?: TlsOptions | undefined;
  /**
   * Where the dashboard is mounted, such as `/outbox/`; `handle` answers 404 outside it.
   * Default `/`.
   */
  readonly basePath?: string | undefined;
  /**
   * Host names (as in the `Host` header, without port) the dashboard answers to besides the
   * loopback names (`localhost`, `127.0.0.1`, `[::1]`), as in the Nest module and the CLI;
   * others get 403, so a foreign site whose domain resolves to this machine (DNS rebinding) can
   * neither read the page nor replay. Name the hosts it is reached by when it is served
   * elsewhere. Default none.
   */
  readonly allowedHosts?: readonly string[] | undefined;
  /**
   * Take `X-Forwarded-Host` as the host the browser saw, when checking a change request's
   * `Origin`. Set it behind a reverse proxy that rewrites `Host` and sets that header; without
   * such a proxy, a client could send the header itself. Default `false`.
   */
  readonly trustForwardedHost?: boolean | undefined;
  /** Most parked rows and dead letters per queue listed at once. Default 100. */
  readonly listLimit?: number | undefined;
  /** How often the page reloads its figures. Default 2000 ms. */
  readonly refreshIntervalMs?: number | undefined;
  /** Where failed requests are logged. Default nowhere. */
  readonly logger?: OutboxLogger | undefined;
}

/** Every option of `OutboxDashboardOptions`, for the options table in docs/options.md. */
export const DASHBOARD_OPTION_NAMES = optionNames<OutboxDashboardOptions>()([
  'pool',
  'schema',
  'allowReplay',
  'queues',
  'amqpUrl',
  'amqpTls',
  'basePath',
  'allowedHosts',
  'trustForwardedHost',
  'listLimit',
  'refreshIntervalMs',
  'logger',
]);
