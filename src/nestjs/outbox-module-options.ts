import type { LoggerService } from '@nestjs/common';
import type { Pool } from 'pg';
import type { AmqpUrls } from '../amqp/amqp-urls.js';
import type { ExchangeDeclaration } from '../amqp/exchange-declaration.js';
import type { ExchangeType } from '../consumer/consumer-definition.js';
import type { ConsumerHostOptions } from '../consumer/consumer-host.js';
import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { optionNames } from '../options/option-names.js';
import type { TlsOptions } from '../options/tls-options.js';
import type { PrometheusRegistry } from '../prometheus/register-prometheus-metrics.js';
import type { RelayOptions } from '../relay/relay-options.js';
import type { KyselyInstance } from '../sql/kysely-shape.js';
import type { OutboxLogger } from '../util/logger.js';
import type { MessageDefinition } from './message-definition.js';
import type { OutboxTransaction } from './outbox.service.js';

/** Relay settings the module does not set itself. */
export type OutboxRelaySettings = Omit<
  RelayOptions,
  'pool' | 'databaseUrl' | 'databaseTls' | 'amqpUrl' | 'amqpTls' | 'schema' | 'logger'
>;

/** Consumer host settings the module does not set itself. */
export type OutboxConsumerSettings = Omit<
  ConsumerHostOptions,
  'db' | 'amqpUrl' | 'amqpTls' | 'schema' | 'logger' | 'consumers' | 'transactions'
>;

/** What `OutboxService.add` joins when it is given no transaction: see `ambientTransaction`. */
export type AmbientTransaction = () => OutboxTransaction;

/**
 * An exchange the application publishes to, declared at bootstrap: its name (a topic
 * exchange), the message definition that names it, or a declaration as `declareExchanges`
 * takes it, of a type consumers can bind to. The module's `prefix` applies to the name and to
 * the alternate exchange.
 */
export type OutboxModuleExchange =
  | string
  | MessageDefinition<unknown>
  | (Omit<ExchangeDeclaration, 'type'> & { readonly type?: ExchangeType | undefined });

/**
 * Options of `OutboxModule.forRoot` (or what the `forRootAsync` factory returns).
 *
 * The database comes as the application's Kysely instance (`db`), or as connection settings
 * (`databaseUrl`, `pool`) from which the module makes its own. The relay needs connections of
 * its own (it holds one for LISTEN and claims in short transactions): give it `databaseUrl`, or
 * a `pool`, or turn it off.
 */
export interface OutboxModuleOptions {
  /**
   * The application's Kysely instance on PostgreSQL: handlers run their transactions on it.
   * Its pool should hold more connections than the handlers' concurrency added up, plus one.
   * Not closed by the module.
   */
  readonly db?: KyselyInstance | undefined;
  /**
   * A Postgres connection string. The relay makes its own bounded pool from it; without `db`
   * and `pool`, the module also makes the handlers' pool and Kysely instance, and closes them
   * at shutdown.
   */
  readonly databaseUrl?: string | undefined;
  /**
   * TLS settings (CA, client certificate and key) of the pools the module makes from
   * `databaseUrl`, the relay's included. Not for `db` or `pool`: those are the application's.
   */
  readonly databaseTls?: TlsOptions | undefined;
  /**
   * Opens the handlers' transactions with the application's ORM instead of Kysely: the adapter
   * of the ORM's entry point, such as `typeormConsumerTransactions(dataSource)` of
   * `outboxkit/typeorm`, or `clsOutbox(txHost, ...)` of `outboxkit/nestjs-cls` spread into the
   * options. A handler's context then carries the ORM's handle as `tx`. `db` (or the pool the
   * module makes) still serves the start checks, the retention cleanup and the cancel of a
   * timed-out handler. Default: Kysely transactions on `db`. See docs/orm.md.
   */
  readonly transactions?: ConsumerTransactions<unknown> | undefined;
  /**
   * What `OutboxService.add` and `addMany` join when called without a transaction: the
   * ambient transaction of `@nestjs-cls/transactional`, as `clsOutbox(txHost, ...)` of
   * `outboxkit/nestjs-cls` gives it. Called at each `add`; throwing (a `NotInTransactionError`
   * outside a transaction) fails the `add`. Default none: `add` then needs a transaction.
   */
  readonly ambientTransaction?: AmbientTransaction | undefined;
  /** A pg pool of the application's, used where `databaseUrl` is not given. Not closed by the module. */
  readonly pool?: Pool | undefined;
  /** Connections of the pool the module makes from `databaseUrl` for handlers. Default 10. */
  readonly poolSize?: number | undefined;
  /**
   * RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`, or the URLs of several
   * cluster nodes, tried in turn.
   */
  readonly amqpUrl: AmqpUrls;
  /**
   * TLS settings (CA, client certificate and key) of every connection the module opens to
   * `amqps://` URLs: the relay's, the consumers', its own for exchanges and the dashboard.
   */
  readonly amqpTls?: TlsOptions | undefined;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /**
   * Put in front of every exchange and queue name the module writes to, declares or consumes
   * from, and of every handler's consumer name (which keys the processed-messages table). Lets
   * several environments or test runs share one broker. To share a database, give each its own
   * `schema` too: the outbox table is not split by prefix (one relay publishes every
   * environment's rows, and an ordering key spans them all). Default none.
   */
  readonly prefix?: string | undefined;
  /**
   * Exchanges the application publishes to but does not consume from. They are declared at
   * bootstrap, as are the exchanges of every handler, and by the relay each time it connects,
   * since the relay puts off messages whose exchange does not exist.
   */
  readonly exchanges?: readonly OutboxModuleExchange[] | undefined;
  /** Run the relay in this process (`true`, the default, or its settings), or not (`false`). */
  readonly relay?: boolean | OutboxRelaySettings | undefined;
  /**
   * Run the handlers in this process (`true`, the default, or host settings), or not
   * (`false`: an API-only instance that writes messages but consumes none).
   */
  readonly consumers?: boolean | OutboxConsumerSettings | undefined;
  /**
   * Apply outboxkit's migrations at bootstrap. Needs `databaseUrl` or `pool`. Default `false`:
   * most deployments migrate once per deploy (`npx outboxkit migrate`).
   */
  readonly migrate?: boolean | undefined;
  /**
   * Run Nest guards and interceptors (global ones and `@UseGuards`/`@UseInterceptors` on the
   * handler's class or method) around handlers, with the execution context type `'outboxkit'`.
   * They run inside the handler's transaction. Default `false`, since global HTTP interceptors
   * often assume a request. Pipes and exception filters are not applied: see the docs.
   */
  readonly enhancers?: boolean | undefined;
  /**
   * Largest serialized payload the writer accepts. Default 1 MiB. (The relay's own limit, for
   * rows written by other writers, is `relay.maxMessageBytes`.)
   */
  readonly maxMessageBytes?: number | undefined;
  /**
   * How often at most the writer wakes listening relays with a NOTIFY, in ms; `0` from every
   * transaction, `false` never. Default 20 ms (see `OutboxWriterOptions.notifyIntervalMs`).
   */
  readonly notifyIntervalMs?: number | false | undefined;
  /**
   * Send the writer's INSERT as a prepared statement, parsed and planned once per session.
   * Default `false`; see `OutboxWriterOptions.preparedStatements` for when sessions keep them.
   */
  readonly preparedStatements?: boolean | undefined;
  /**
   * Where outboxkit logs: a Nest `LoggerService`, an outboxkit `OutboxLogger`, or `false` for
   * nothing. Default: Nest's `Logger` with the context `Outbox`.
   */
  readonly logger?: LoggerService | OutboxLogger | false | undefined;
  /**
   * The application's prom-client `Registry`: the module registers outboxkit's metrics in it
   * once started (the relay's and the consumers' of this process, and the outbox gauges), and
   * removes them at shutdown, so the application's one `/metrics` serves both. Default none.
   */
  readonly prometheusRegistry?: PrometheusRegistry | undefined;
}

/** Every option of `OutboxModuleOptions`, for the options table in docs/options.md. */
export const MODULE_OPTION_NAMES = optionNames<OutboxModuleOptions>()([
  'db',
  'databaseUrl',
  'databaseTls',
  'pool',
  'transactions',
  'ambientTransaction',
  'poolSize',
  'amqpUrl',
  'amqpTls',
  'schema',
  'prefix',
  'exchanges',
  'relay',
  'consumers',
  'migrate',
  'enhancers',
  'maxMessageBytes',
  'notifyIntervalMs',
  'preparedStatements',
  'logger',
  'prometheusRegistry',
]);
