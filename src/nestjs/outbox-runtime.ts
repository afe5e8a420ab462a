import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import type { ExchangeDeclaration } from '../amqp/exchange-declaration.js';
import { PREDEFINED_EXCHANGES } from '../amqp/predefined-exchanges.js';
import type { AnyConsumerDefinition } from '../consumer/consumer-definition.js';
import { ConsumerHost } from '../consumer/consumer-host.js';
import { type ConsumerTopology, topologyOf } from '../consumer/consumer-topology.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StateError } from '../errors/state-error.js';
import {
  type PrometheusRegistration,
  registerPrometheusMetrics,
} from '../prometheus/register-prometheus-metrics.js';
import { OutboxRelay } from '../relay/outbox-relay.js';
import { createPool } from '../sql/create-pool.js';
import { databaseTlsConfig } from '../sql/database-tls.js';
import { kyselyQueryable } from '../sql/kysely-queryable.js';
import { poolMax } from '../sql/pool-size.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { type OutboxStatus, outboxStatus } from '../status/outbox-status.js';
import { errorMessage, redactUrl } from '../util/logger.js';
import { OutboxWriter } from '../writer/outbox-writer.js';
import { migrateAtBootstrap } from './bootstrap-migration.js';
import { BrokerAdmin } from './broker-admin.js';
import { addExchange, type ResolvedModuleOptions } from './resolve-module-options.js';

/** What the handler explorer found, ready for the runtime to start. */
export interface RuntimeHandlers {
  readonly consumers: readonly AnyConsumerDefinition[];
  /**
   * Where each consumer was declared, by its name (`@OutboxHandler on Class.method`): an error
   * in its options names that rather than `consumers[name]`, which the application never wrote.
   */
  readonly sources?: ReadonlyMap<string, string> | undefined;
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

const DEFAULT_START_TIMEOUT_MS = 30_000;

/**
 * Everything one `OutboxModule` owns in one application: the writer, the relay, the consumer
 * host, the connections it made, and their lifecycle. It has no Nest import: the module's
 * providers only wire it to Nest's hooks, so the same runtime could serve another framework.
 * Nothing here is static, so two applications in one process share nothing.
 */
export class OutboxRuntime {
  readonly options: ResolvedModuleOptions;
  readonly writer: OutboxWriter;
  /** The Kysely instance handlers run their transactions on. */
  // biome-ignore lint/suspicious/noExplicitAny: see OutboxModuleOptions.db
  readonly db: Kysely<any>;
  readonly #ownsDb: boolean;
  /** A pool of the module's own, made from `databaseUrl` when no `db` or `pool` was given. */
  readonly #ownPool: pg.Pool | undefined;
  readonly #admin: BrokerAdmin;
  #relay: OutboxRelay | undefined;
  #host: ConsumerHost | undefined;
  #topologies: ConsumerTopology[] = [];
  #migrated = false;
  #prometheus: PrometheusRegistration | undefined;
  #state: State = 'new';
  #stopped: Promise<void> | undefined;
  #closed: Promise<void> | undefined;
  /** `stop()` or `close()` was called: not set by the clean-up of a start that failed. */
  #shutdownRequested = false;

  constructor(options: ResolvedModuleOptions) {
    this.options = options;
    this.writer = new OutboxWriter({
      schema: options.schema,
      ...(options.maxMessageBytes !== undefined && { maxMessageBytes: options.maxMessageBytes }),
      ...(options.notifyIntervalMs !== undefined && { notifyIntervalMs: options.notifyIntervalMs }),
      preparedStatements: options.preparedStatements,
    });
    if (!options.db && !options.pool && options.databaseUrl) {
      // Bounded (a handler fails and retries rather than wait forever for a connection), and
      // every client heard for its whole life: unheard, a dying session kills the process.
      this.#ownPool = createPool(
        {
          connectionString: options.databaseUrl,
          max: options.poolSize,
          application_name: 'outboxkit-nestjs',
          ...databaseTlsConfig(options.databaseUrl, options.databaseTls),
        },
        options.logger,
      );
    }
    const pool = options.pool ?? this.#ownPool;
    this.#ownsDb = !options.db && pool === this.#ownPool;
    // The application's instance may come from kysely's CommonJS build: the same at run time.
    this.db =
      (options.db as typeof this.db | undefined) ??
      new Kysely({ dialect: new PostgresDialect({ pool: pool! }) });
    this.#admin = new BrokerAdmin({
      urls: options.amqpUrl,
      tls: amqpTlsFor(options.amqpUrl, options.amqpTls),
      logger: options.logger,
      connectionName: `outboxkit-nestjs-admin-${process.pid}`,
    });
  }

  /** The relay of this process: made when the module starts, running once the start resolved. */
  get relay(): OutboxRelay | undefined {
    return this.#relay;
  }

  /** The consumer host, when this process runs handlers: made when the module starts. */
  get consumerHost(): ConsumerHost | undefined {
    return this.#host;
  }

  /** The broker objects of this process's handlers (queues, dead-letter, delay and retry-due queues). */
  get topologies(): readonly ConsumerTopology[] {
    return this.#topologies;
  }

  /**
   * `migrate: true` and the migration has not run yet: it runs in `onApplicationBootstrap`,
   * after every `onModuleInit`, where an application may already write.
   */
  get migrationPending(): boolean {
    return this.options.migrate === true && !this.#migrated;
  }

  /** Started and not stopping. */
  get isRunning(): boolean {
    return this.#state === 'running';
  }

  /**
   * Migrates (when asked), declares the exchanges, starts the consumers (which declare their
   * queues, so the relay's first messages find them bound), then the relay. On failure, stops
   * what it started, closes the connections (a failed start is not retried) and rethrows.
   */
  async start(handlers: RuntimeHandlers): Promise<void> {
    if (this.#state !== 'new')
      throw new StateError(`the outbox cannot start: it is ${this.#state}`, this.#state);
    this.#state = 'starting';
    const o = this.options;
    const consumers = o.consumers === false ? [] : [...handlers.consumers];
    this.#topologies = asHandlerOption(handlers.sources, () => consumers.map((c) => topologyOf(c)));
    if (o.ambientTransaction && !o.transactions && consumers.length > 0) {
      // Allowed (handlers may write through ctx.trx alone), but mostly a `transactions` left out.
      o.logger.warn(
        "`ambientTransaction` is set without `transactions`: handlers run in Kysely transactions that `@Transactional()` methods and `OutboxService.add(message, payload)` do not join, so what those write commits apart from the message's dedupe row and a retried message writes it again; set `transactions` too (`clsOutbox` gives both), or write only through ctx.trx",
        { handlers: consumers.map((c) => c.name) },
      );
    }
    const exchanges = new Map<string, ExchangeDeclaration>(o.exchanges);
    try {
      for (const c of handlers.consumers) {
        addExchange(
          exchanges,
          { name: c.exchange, type: c.exchangeType ?? 'topic' },
          `consumers[${c.name}]`,
        );
      }
      // Both are built, and their options checked, before anything starts: a bad relay option
      // must not fail the start after the consumers took messages.
      if (o.consumers !== false && consumers.length > 0) {
        const settings = o.consumers;
        this.#host = asHandlerOption(handlers.sources, () =>
          asModuleOption(
            'consumers',
            settings,
            () =>
              new ConsumerHost({
                ...settings,
                db: this.db,
                ...(o.transactions && { transactions: o.transactions }),
                amqpUrl: o.amqpUrl,
                ...(o.amqpTls && { amqpTls: o.amqpTls }),
                schema: o.schema,
                logger: o.logger,
                consumers,
              }),
          ),
        );
      }
      if (o.relay !== false) {
        const settings = o.relay;
        this.#relay = asModuleOption(
          'relay',
          settings,
          () =>
            new OutboxRelay({
              ...settings,
              // Declared again each time the relay connects: so also when RabbitMQ was down
              // at bootstrap (see #declareExchanges).
              exchanges: withModuleExchanges(settings.exchanges, exchanges),
              ...(o.databaseUrl
                ? {
                    databaseUrl: o.databaseUrl,
                    ...(o.databaseTls && { databaseTls: o.databaseTls }),
                  }
                : { pool: o.pool! }),
              amqpUrl: o.amqpUrl,
              ...(o.amqpTls && { amqpTls: o.amqpTls }),
              schema: o.schema,
              logger: o.logger,
            }),
        );
      }

      if (o.migrate) await this.#migrate();

      await this.#declareExchanges(exchanges);

      if (o.consumers === false && handlers.consumers.length > 0) {
        o.logger.info('consumers are off in this process; handlers not started', {
          handlers: handlers.consumers.map((c) => c.name),
        });
      } else if (o.consumers !== false && handlers.consumers.length === 0) {
        // A handler class left out of a module's `providers` is never found, and nothing fails.
        o.logger.info(
          'no @OutboxHandler found: no consumers start. A handler is found only on a provider or controller of a module the application imports; set `consumers: false` where this process only writes',
          {},
        );
      }
      this.#warnOfSmallPool();
      // Consumers first: they declare their queues, so the relay's first messages find them bound.
      await this.#host?.start();
      await this.#relay?.start();

      if (o.prometheusRegistry) {
        this.#prometheus = registerPrometheusMetrics(o.prometheusRegistry, {
          ...(this.#relay && { relay: this.#relay }),
          ...(this.#host && { consumers: this.#host }),
          pool: this.#queryable(),
          schema: o.schema,
          // Its warning (the gauges left out of a scrape) goes where the module logs, not stderr.
          logger: o.logger,
        });
      }
    } catch (error) {
      // Not `close()`: a start that failed on its own was not cut short by a shutdown.
      await this.#closeOnce().catch(() => {});
      throw error;
    }
    this.#state = 'running';
  }

  /**
   * Consumers first: they stop taking messages, let running handlers commit and be acked, and
   * hand the rest back. Then the relay: it stops claiming and settles the confirms in flight.
   * Messages written meanwhile stay in the outbox for the next relay.
   */
  stop(): Promise<void> {
    this.#shutdownRequested = true;
    return this.#stopOnce();
  }

  /**
   * The handlers' pool, when the module knows it (made from `databaseUrl`, or `pool` without
   * `db`), holding no more connections than the handlers run transactions at once: messages
   * wait for connections, and a handler past its `timeoutMs` for the one that would cancel it.
   */
  #warnOfSmallPool(): void {
    const o = this.options;
    const pool = o.db ? undefined : (o.pool ?? this.#ownPool);
    const max = poolMax(pool);
    const concurrency = this.#host?.concurrency ?? 0;
    if (max === undefined || concurrency === 0 || max > concurrency) return;
    o.logger.warn(
      `the handlers' pool holds ${max} connection${max === 1 ? '' : 's'}, and the handlers run up to ${concurrency} transactions at once, each on a connection: messages wait for connections, and a handler past its timeoutMs cannot be cancelled in time. Give the pool ${concurrency + 1} or more (${pool === this.#ownPool ? '`poolSize`' : "the pool's `max`"}), or lower the handlers' \`concurrency\``,
      { poolMax: max, concurrency },
    );
  }

  #stopOnce(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#state = 'stopping';
    try {
      await this.#host?.stop();
    } finally {
      try {
        await this.#relay?.stop();
      } finally {
        // Only now: scrapes during a graceful drain still see the handlers and the relay.
        this.#prometheus?.unregister();
        this.#state = 'stopped';
      }
    }
  }

  /** Whether `stop()` or `close()` was called: a start that fails from then on was cut short. */
  get shutdownBegun(): boolean {
    return this.#shutdownRequested;
  }

  /** Stops if still running, then closes the connections the module made. Idempotent. */
  close(): Promise<void> {
    this.#shutdownRequested = true;
    return this.#closeOnce();
  }

  #closeOnce(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  async #close(): Promise<void> {
    try {
      await this.#stopOnce();
    } finally {
      await this.#admin.close();
      if (this.#ownsDb) await this.db.destroy();
      // Kysely ends the pool only if it ran a query on it; the status and health reads go to
      // the pool directly, and its idle client would keep the process up for 10 s. Not waited
      // for: its idle clients end at once, and a connection still being made to a Postgres that
      // does not answer (a failed start) would hold the close until its own timeout.
      if (this.#ownPool && !this.#ownPool.ended) this.#ownPool.end().catch(() => {});
    }
  }

  /** Pending, oldest pending age, retrying and parked rows of the outbox. */
  async outboxStatus(): Promise<OutboxStatus> {
    return outboxStatus(this.#queryable(), { schema: this.options.schema });
  }

  /** Messages in each handler's dead-letter queue, by queue name. */
  async deadLetterDepths(): Promise<Map<string, number>> {
    const queues = this.#topologies.map((t) => t.deadLetterQueue.name);
    const depths = await this.#admin.queueDepths(queues);
    return new Map([...depths].map(([queue, depth]) => [queue, depth ?? 0]));
  }

  /**
   * A connection to the outbox database for reads and dead-letter work outside handlers (the
   * dashboard's): the module's or the application's pool, else the Kysely instance.
   */
  get queryable(): PgQueryable {
    return this.#queryable();
  }

  /**
   * Declares the exchanges before the handlers and the relay start. Handlers need RabbitMQ to
   * start at all, so with handlers this waits for it (up to `consumers.startTimeoutMs`). Without
   * them the application must not wait for a broker it only writes for through the outbox:
   * when RabbitMQ cannot be reached at once, the start goes on, and the relay, which has the
   * module's exchanges among its own, declares them once it connects.
   */
  async #declareExchanges(exchanges: ReadonlyMap<string, ExchangeDeclaration>): Promise<void> {
    const o = this.options;
    if (this.#host) {
      const startTimeoutMs =
        (o.consumers !== false && o.consumers.startTimeoutMs) || DEFAULT_START_TIMEOUT_MS;
      await this.#admin.declareExchanges(exchanges, startTimeoutMs);
      return;
    }
    try {
      // A deadline already passed: one attempt, no retries.
      await this.#admin.declareExchanges(exchanges, 0);
    } catch (error) {
      if (!(error instanceof OutboxkitError && error.code === 'broker-unreachable')) throw error;
      o.logger.warn(
        this.#relay
          ? 'RabbitMQ not reachable at bootstrap: starting without it; the relay declares the exchanges when it connects'
          : 'RabbitMQ not reachable at bootstrap: the exchanges are not declared; the relay that publishes them must declare them (its `exchanges` option)',
        { exchanges: [...exchanges.keys()], error: errorMessage(error.cause ?? error) },
      );
    }
  }

  async #migrate(): Promise<void> {
    const { pool, databaseUrl, schema, logger } = this.options;
    // With only `db` and `databaseUrl`, a one-connection pool serves the migration and goes.
    const once =
      pool || this.#ownPool
        ? undefined
        : createPool(
            {
              connectionString: databaseUrl,
              max: 1,
              ...databaseTlsConfig(databaseUrl, this.options.databaseTls),
            },
            this.options.logger,
          );
    // Named as the relay's start checks name it, so the errors read the same either way.
    const where = pool || !databaseUrl ? 'the given pool' : redactUrl(databaseUrl);
    try {
      const applied = await migrateAtBootstrap((pool ?? this.#ownPool ?? once)!, schema, where);
      this.#migrated = true;
      if (applied.length > 0) logger.info('outboxkit migrations applied', { schema, applied });
    } finally {
      // Not awaited: a connect that hangs would hold the failed start until its timeout.
      once?.end().catch(() => {});
    }
  }

  #queryable(): PgQueryable {
    const pool = this.options.pool ?? this.#ownPool;
    return pool ?? kyselyQueryable(this.db);
  }
}

/** The relay's own exchange declarations, and the module's that it does not declare itself. */
function withModuleExchanges(
  own: readonly ExchangeDeclaration[] | undefined,
  module: ReadonlyMap<string, ExchangeDeclaration>,
): readonly ExchangeDeclaration[] {
  // Not a list: the relay's own check names the option.
  if (own !== undefined && !Array.isArray(own)) return own;
  const declared = new Set((own ?? []).map((d) => d?.name));
  const added = [...module]
    // RabbitMQ's own (amq.topic, ...), which a handler may bind to, exist: the relay refuses them.
    .filter(([name]) => !declared.has(name) && !PREDEFINED_EXCHANGES.has(name))
    .map(([, declaration]) => declaration);
  return [...(own ?? []), ...added];
}

/**
 * Runs `make`, naming a handler's option in its error as where the handler was declared
 * (`@OutboxHandler on Class.method: retry.maxAttempts`) rather than as the core's
 * `consumers[name].retry.maxAttempts`.
 */
function asHandlerOption<T>(sources: ReadonlyMap<string, string> | undefined, make: () => T): T {
  try {
    return make();
  } catch (error) {
    if (!(error instanceof ConfigurationError) || !sources) throw error;
    for (const [name, where] of sources) {
      const path = `consumers[${name}]`;
      if (!error.option.startsWith(path)) continue;
      const field = error.option.slice(path.length).replace(/^\./, '');
      throw new ConfigurationError(field ? `${where}: ${field}` : where, error.detail);
    }
    throw error;
  }
}

/**
 * Builds a core object from the settings the module took under `key`. A `ConfigurationError`
 * about one of them names the module's option (`relay.stopTimeoutMs`): the core's bare name
 * would not say whether the relay's or the consumers' setting is wrong.
 */
function asModuleOption<T>(key: 'relay' | 'consumers', settings: object, make: () => T): T {
  try {
    return make();
  } catch (error) {
    const given = error instanceof ConfigurationError && error.option.split(/[.[]/)[0];
    if (!given || !Object.hasOwn(settings, given)) throw error;
    throw new ConfigurationError(`${key}.${error.option}`, error.detail);
  }
}
