import { setMaxListeners } from 'node:events';
import { clearTimeout, setTimeout } from 'node:timers';
import type { ChannelModel } from 'amqplib';
import type { Kysely, Transaction } from 'kysely';
import { AmqpConnection } from '../amqp/amqp-connection.js';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { type AmqpUrls, amqpUrlList, heartbeatFor } from '../amqp/amqp-urls.js';
import { CLOSE_TIMEOUT_MS } from '../amqp/close-within.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StartupError } from '../errors/startup-error.js';
import { StateError } from '../errors/state-error.js';
import { LatencyHistogram } from '../metrics/latency-histogram.js';
import { backoffOption } from '../options/backoff-option.js';
import { connectionNameOption } from '../options/connection-name-option.js';
import { nestedOptions } from '../options/nested-options.js';
import { optionNames } from '../options/option-names.js';
import type { TlsOptions } from '../options/tls-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { kyselyQueryable } from '../sql/kysely-queryable.js';
import type { KyselyInstance } from '../sql/kysely-shape.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { StatementNames } from '../sql/statement-names.js';
import { CONSUMER_PRIVILEGES } from '../start/check-privileges.js';
import { checkTransactions } from '../start/check-transactions.js';
import { bounded, runStartChecks, type StartChecks } from '../start/start-checks.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { durationMs } from '../util/duration-option.js';
import { consoleLogger, errorMessage, type OutboxLogger, redactUrl } from '../util/logger.js';
import type { NotInferred } from '../util/not-inferred.js';
import { positiveInteger } from '../util/positive-integer.js';
import { resolveLogger } from '../util/resolve-logger.js';
import { settleWithin } from '../util/with-timeout.js';
import type { ConsumerDefinition } from './consumer-definition.js';
import { ConsumerRunner } from './consumer-runner.js';
import type { ConsumerStats } from './consumer-stats.js';
import { emptyConsumerStats } from './consumer-stats.js';
import { type ConsumerTopology, consumerTopologies, declareTopology } from './consumer-topology.js';
import type { ConsumerTransactions } from './consumer-transactions.js';
import { type HandlerFailure, LastFailure } from './last-failure.js';
import {
  drainingHosts,
  type PartitionedConsumer,
  refuseOtherPartitionSets,
} from './other-partition-sets.js';
import { PartitionBalancer } from './partition-balancer.js';
import { PartitionCountChangedError } from './partition-count-changed-error.js';
import { partitionRosterQueueName } from './partition-set.js';
import { PartitionsPluginMissingError } from './partitions-plugin-missing-error.js';
import { processedQueries } from './processed-queries.js';
import { refuseSharedQueues } from './refuse-shared-queues.js';
import { type ResolvedConsumer, resolveConsumers } from './resolve-consumer.js';
import {
  RETENTION_OPTION_NAMES,
  RetentionCleaner,
  type RetentionOptions,
} from './retention-cleaner.js';
import { RetryPublisher } from './retry-publisher.js';
import { TopologyConflictError } from './topology-conflict-error.js';
import { UnpartitionedQueueError } from './unpartitioned-queue-error.js';

/**
 * @typeParam Tx the handle the handlers get as `tx`: Kysely's `Transaction` by default, the ORM's
 *   handle with `transactions` (taken from it). A consumer typed for another handle is a compile
 *   error: its handler would get an object it cannot use.
 */
// biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
export interface ConsumerHostOptions<Tx = Transaction<any>> {
  /**
   * The application's Kysely instance on PostgreSQL. Its pool should hold more connections
   * than the consumers' concurrency added up, plus one, and must listen for errors on every
   * client, checked out ones too (`pool.on('connect', (c) => c.on('error', log))`): Kysely adds
   * no listener, and a session that dies while a handler runs would otherwise end the process.
   */
  readonly db: KyselyInstance;
  /** RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`, or several nodes' URLs. */
  readonly amqpUrl: AmqpUrls;
  /** TLS settings (CA, client certificate and key) for `amqps://` URLs. Default Node's. */
  readonly amqpTls?: TlsOptions | undefined;
  // biome-ignore lint/suspicious/noExplicitAny: payloads and database types vary by consumer
  readonly consumers: readonly ConsumerDefinition<any, any, NotInferred<Tx>>[];
  /**
   * Opens the handlers' transactions with an ORM instead of `db`, so handlers write with the
   * ORM in the transaction that holds their dedupe row, as `context.tx`: the adapter of the
   * ORM's entry point, such as `typeormConsumerTransactions(dataSource)` of `outboxkit/typeorm`
   * (see docs/orm.md). `db` still runs the start checks and the retention cleanup, and cancels
   * a timed-out handler's statement; it must reach the same database as the ORM, as a role
   * that may signal the ORM's sessions. Default: Kysely transactions on `db`.
   */
  readonly transactions?: ConsumerTransactions<Tx> | undefined;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  readonly logger?: OutboxLogger | undefined;
  /** AMQP heartbeat in seconds. Default 10. */
  readonly heartbeatSeconds?: number | undefined;
  /** Delay between reconnects to RabbitMQ, and between retries while Postgres is down. Default 100 ms doubling to 10 s. */
  readonly reconnectBackoff?: Partial<BackoffPolicy> | undefined;
  /**
   * How long a delivery's transaction is retried in place, without counting an attempt, while
   * Postgres is unavailable to it (BEGIN, the claim or COMMIT fail for the connection, or the
   * connection dies under the handler). After that the delivery goes back to the broker,
   * uncommitted and unacked, for this or another process to take again: nacked with requeue,
   * or for an ordered consumer by closing its channel, which requeues in order. Default 5 min;
   * must stay below `brokerConsumerTimeoutMs`.
   */
  readonly databaseRetryLimitMs?: number | undefined;
  /** How long a retry or dead-letter copy may wait for its publisher confirm. Default 30 s. */
  readonly publishTimeoutMs?: number | undefined;
  /** How long `start()` waits for RabbitMQ before it fails. Default 30 s. */
  readonly startTimeoutMs?: number | undefined;
  /** How long `stop()` waits for running handlers. Default 30 s. */
  readonly stopTimeoutMs?: number | undefined;
  /**
   * The broker's `consumer_timeout` (RabbitMQ's default is 30 minutes). Time limits are checked
   * against it: a delivery unacked for longer gets its channel closed by the broker.
   */
  readonly brokerConsumerTimeoutMs?: number | undefined;
  /** Cleanup of old processed keys of these consumers; `false` to run it elsewhere. */
  readonly retention?: RetentionOptions | false | undefined;
  /**
   * Shown in the broker's management UI. Default `outboxkit-consumer-<pid>-<n>`. Retry and
   * dead-letter copies go on a connection of their own, named `<connectionName>-copies`.
   */
  readonly connectionName?: string | undefined;
  /**
   * How often a partitioned consumer compares the partitions this process is active on (those
   * with traffic) with its share (partitions / processes, rounded up) and hands the excess to
   * other processes. Default 5 s.
   */
  readonly rebalanceIntervalMs?: number | undefined;
}

/** Every option of `ConsumerHostOptions`, for the options table in docs/options.md. */
export const CONSUMER_HOST_OPTION_NAMES = optionNames<ConsumerHostOptions>()([
  'db',
  'amqpUrl',
  'amqpTls',
  'consumers',
  'transactions',
  'schema',
  'logger',
  'heartbeatSeconds',
  'reconnectBackoff',
  'databaseRetryLimitMs',
  'publishTimeoutMs',
  'startTimeoutMs',
  'stopTimeoutMs',
  'brokerConsumerTimeoutMs',
  'retention',
  'connectionName',
  'rebalanceIntervalMs',
]);

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * Long enough to ride out a Postgres restart or failover without churn, short enough that a
 * longer outage lets another process try, well before the broker's consumer timeout, and that
 * the requeues stay few (a RabbitMQ 4 quorum queue dead-letters a message after 20 of them).
 */
export const DEFAULT_DATABASE_RETRY_LIMIT_MS = 5 * 60_000;

let hostCount = 0;

/**
 * Runs consumers: declares their topology, consumes with manual acks, runs each handler in a
 * transaction with the dedupe row, retries through delay queues, dead-letters what cannot
 * succeed, reconnects after any loss, and deletes old processed keys.
 *
 * @example
 * const host = new ConsumerHost({ db, amqpUrl, consumers: [orderPlaced] });
 * await host.start();
 * // ...
 * await host.stop();
 */
// biome-ignore lint/suspicious/noExplicitAny: see ConsumerHostOptions
export class ConsumerHost<Tx = Transaction<any>> {
  readonly #logger: OutboxLogger;
  readonly #amqp: AmqpConnection;
  readonly #runners: ConsumerRunner[];
  readonly #publisher: RetryPublisher;
  readonly #cleaner: RetentionCleaner | undefined;
  readonly #balancers: PartitionBalancer[] = [];
  /** One topology of each partitioned consumer: each declares the consumer's whole set. */
  readonly #partitionSets: ConsumerTopology[] = [];
  /** The consumers with `partitions`, checked at each connect for a set of another count. */
  readonly #partitioned: PartitionedConsumer[] = [];
  readonly #stopping = unlimitedController();
  /**
   * Aborts when a stop has waited `stopTimeoutMs` for running handlers: they are given up. Each
   * running handler listens to it, as many as all consumers' concurrency: no listener limit.
   */
  readonly #stopDeadline = unlimitedController();
  readonly #reconnectBackoff: BackoffPolicy;
  readonly #startTimeoutMs: number;
  readonly #stopTimeoutMs: number;
  #state: State = 'new';
  #stopped: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #started: { resolve: () => void; reject: (error: unknown) => void } | undefined;
  /** Why the last attempt to attach the consumers failed, for a start that times out. */
  #lastStartFailure: unknown;
  readonly #schemaCheck: Pick<StartChecks, 'db' | 'schema' | 'where' | 'privileges'>;
  readonly #statementNames = new StatementNames();
  /** Checks at start whether the claim can go by name: Kysely's own transactions only. */
  readonly #probeStatementNames: (() => Promise<unknown>) | undefined;
  /** Checks at start that the ORM adapter opens transactions: with `transactions` only. */
  readonly #checkTransactions: (() => Promise<void>) | undefined;

  constructor(options: ConsumerHostOptions<Tx>) {
    if (options === null || typeof options !== 'object') {
      throw new ConfigurationError('options', 'must be an object');
    }
    rejectUnknownOptions(options, CONSUMER_HOST_OPTION_NAMES, { owner: 'ConsumerHost' });
    if (!options.db || typeof options.db.transaction !== 'function') {
      throw new ConfigurationError('db', 'must be a Kysely instance');
    }
    // Taken by its shape (see `KyselyInstance`); a Kysely of either of kysely's builds.
    // biome-ignore lint/suspicious/noExplicitAny: handlers use tables of the application's own
    const db = options.db as unknown as Kysely<any>;
    if (
      options.transactions !== undefined &&
      (options.transactions === null || typeof options.transactions.run !== 'function')
    ) {
      throw new ConfigurationError(
        'transactions',
        'must be the consumer transactions of an ORM adapter, such as typeormConsumerTransactions(dataSource)',
      );
    }
    const amqpUrls = amqpUrlList(options.amqpUrl);
    const amqpTls = amqpTlsFor(amqpUrls, options.amqpTls);
    const { schemaName } = outboxTables(options.schema);
    this.#schemaCheck = {
      db: kyselyQueryable(db),
      schema: schemaName,
      where: "the consumers' database",
      privileges: CONSUMER_PRIVILEGES,
    };
    const { transactions } = options;
    this.#probeStatementNames =
      transactions === undefined
        ? () => bounded(this.#statementNames.probe(db, this.#logger))
        : undefined;
    this.#checkTransactions =
      transactions === undefined
        ? undefined
        : () => checkTransactions(this.#schemaCheck.db!, transactions);
    // Compared with the handlers' time limits, never a timer: any size (a broker whose
    // consumer_timeout is off may be given a large one).
    const brokerConsumerTimeoutMs = positiveInteger(
      'brokerConsumerTimeoutMs',
      options.brokerConsumerTimeoutMs,
      30 * 60_000,
    );
    const consumers = resolveConsumers(options.consumers, { brokerConsumerTimeoutMs });
    refuseSharedQueues(consumers);
    const databaseRetryLimitMs = durationMs(
      'databaseRetryLimitMs',
      options.databaseRetryLimitMs,
      DEFAULT_DATABASE_RETRY_LIMIT_MS,
    );
    if (databaseRetryLimitMs >= brokerConsumerTimeoutMs) {
      throw new ConfigurationError(
        'databaseRetryLimitMs',
        `must be below the broker's consumer timeout (${brokerConsumerTimeoutMs} ms, option ` +
          'brokerConsumerTimeoutMs), or the broker closes the channel first',
      );
    }
    this.#logger = resolveLogger(options.logger, consoleLogger);
    warnOfLongBatches(consumers, brokerConsumerTimeoutMs, this.#logger);
    this.#reconnectBackoff = backoffOption('reconnectBackoff', options.reconnectBackoff, {
      initialMs: 100,
      maxMs: 10_000,
    });
    this.#startTimeoutMs = durationMs('startTimeoutMs', options.startTimeoutMs, 30_000);
    this.#stopTimeoutMs = durationMs('stopTimeoutMs', options.stopTimeoutMs, 30_000);
    const heartbeatSeconds = heartbeatFor(amqpUrls, options.heartbeatSeconds);

    if (options.retention !== false) {
      const retention = nestedOptions(
        'retention',
        options.retention,
        RETENTION_OPTION_NAMES,
        "ConsumerHost's retention",
        '`false` (or left out)',
      );
      this.#cleaner = new RetentionCleaner({
        ...retention,
        db,
        ...(options.schema !== undefined && { schema: options.schema }),
        consumers: consumers.map((c) => c.name),
        logger: this.#logger,
      });
      for (const c of consumers) {
        const span = c.retryDelaysMs.reduce((a, b) => a + b, 0) + c.maxAttempts * c.timeoutMs;
        if (this.#cleaner.retentionMs <= span) {
          throw new ConfigurationError(
            'retention.retentionMs',
            `must exceed the longest time a message of consumer "${c.name}" can take to come ` +
              `back (${span} ms of retries), or a late copy would find its key gone and run again`,
          );
        }
      }
    }

    hostCount += 1;
    const connectionName =
      connectionNameOption(options.connectionName) ??
      `outboxkit-consumer-${process.pid}-${hostCount}`;
    const connection = (name: string) =>
      new AmqpConnection({
        urls: amqpUrls,
        heartbeatSeconds,
        reconnectBackoff: this.#reconnectBackoff,
        logger: this.#logger,
        connectionName: name,
        tls: amqpTls,
      });
    this.#amqp = connection(connectionName);
    this.#publisher = new RetryPublisher(
      durationMs('publishTimeoutMs', options.publishTimeoutMs, 30_000),
      connection(`${connectionName}-copies`),
    );
    const queries = processedQueries(options.schema);
    const rebalanceIntervalMs = durationMs(
      'rebalanceIntervalMs',
      options.rebalanceIntervalMs,
      5000,
    );
    // One runner per queue: a partitioned consumer has one per partition, each with its own
    // channel and `concurrency`, sharing the consumer's totals.
    this.#runners = consumers.flatMap((consumer) => {
      const totals = {
        stats: emptyConsumerStats(),
        handlerSeconds: new LatencyHistogram(),
        lastFailure: new LastFailure(),
      };
      const runners = consumerTopologies(consumer).map(
        (topology) =>
          new ConsumerRunner({
            consumer,
            topology,
            totals,
            db,
            transactions: options.transactions,
            queries,
            statementNames: this.#statementNames,
            publisher: this.#publisher,
            logger: this.#logger,
            reconnectBackoff: this.#reconnectBackoff,
            databaseRetryLimitMs,
            stopping: this.#stopping.signal,
            stopDeadline: { signal: this.#stopDeadline.signal, stopTimeoutMs: this.#stopTimeoutMs },
          }),
      );
      if (consumer.partitions !== undefined) {
        this.#partitionSets.push(runners[0]!.topology);
        const { name, queue, partitions } = consumer;
        this.#partitioned.push({ name, queue, partitions });
      }
      if (consumer.partitions !== undefined && consumer.partitions > 1) {
        this.#balancers.push(
          new PartitionBalancer({
            consumer: consumer.name,
            partitions: runners,
            rosterQueue: partitionRosterQueueName(consumer.queue),
            intervalMs: rebalanceIntervalMs,
            logger: this.#logger,
          }),
        );
      }
      return runners;
    });
  }

  /** Partitions this host handed over to other processes to even out the load. */
  get partitionHandOvers(): number {
    return this.#balancers.reduce((n, b) => n + b.handOvers, 0);
  }

  /**
   * Its consumers' `concurrency` added up: the handler transactions it runs at once, each on a
   * connection of `db`'s pool, which needs one more to cancel a handler past its time. A
   * partitioned consumer counts once, though each partition this process is active on runs
   * that many.
   */
  get concurrency(): number {
    const byName = new Map(this.#runners.map((r) => [r.name, r.concurrency]));
    return [...byName.values()].reduce((n, c) => n + c, 0);
  }

  /** Names of the consumers this host runs. */
  get consumers(): string[] {
    return [...new Set(this.#runners.map((r) => r.name))];
  }

  get isRunning(): boolean {
    return this.#state === 'running';
  }

  /** Whether the host's RabbitMQ connection is up now; for health checks. */
  get isConnected(): boolean {
    return this.#amqp.isConnected;
  }

  /** RabbitMQ connections made; above 1 after a reconnect. */
  get amqpConnects(): number {
    return this.#amqp.connects;
  }

  /**
   * Deliveries this host received and has not settled yet (running, or waiting to run or to
   * retry in place), over all its consumers. With the queues empty, 0 means nothing is left to
   * handle; `outboxkit/testing`'s `waitForIdle` waits for that.
   */
  get inFlight(): number {
    return this.#runners.reduce((n, r) => n + r.inFlight, 0);
  }

  /**
   * The queues this host consumes from (with the retry-due queues) and its retry delay queues
   * (not the dead-letter queues).
   */
  get queues(): string[] {
    return this.#runners.flatMap((r) => [
      r.topology.queue.name,
      ...(r.topology.retryDueQueue ? [r.topology.retryDueQueue.name] : []),
      ...r.topology.delayQueues.map((q) => q.name),
    ]);
  }

  /**
   * Running totals of one consumer: a frozen copy, as `OutboxRelay.stats()` returns, so that a
   * reading taken before something happened still says what it said.
   */
  stats(consumer: string): Readonly<ConsumerStats> {
    return Object.freeze({ ...this.#runner(consumer).stats });
  }

  /**
   * The last failed handler attempt of one consumer since the host was made, with what the
   * handler threw, or `undefined` when none failed: a test that waits in vain, or an operator
   * looking at counts that grow, sees why.
   */
  lastFailure(consumer: string): HandlerFailure | undefined {
    return this.#runner(consumer).lastFailure.value;
  }

  /**
   * Run times of one consumer's handler attempts (failed and timed-out ones included), for
   * `collectMetrics`' `outboxkit_consumer_handler_seconds`.
   */
  handlerSeconds(consumer: string): Readonly<LatencyHistogram> {
    return this.#runner(consumer).handlerSeconds;
  }

  /** Transactions of one consumer now retried in place because Postgres is unavailable to them. */
  waitingForDatabase(consumer: string): number {
    this.#runner(consumer); // throws for a name no consumer has
    return this.#runners
      .filter((r) => r.name === consumer)
      .reduce((n, r) => n + r.waitingForDatabase, 0);
  }

  /**
   * While transactions of one consumer are retried in place for the database (see
   * `waitingForDatabase`), the error the latest of them failed with (a connection refused, a
   * read-only session...); `undefined` while none waits.
   */
  databaseWaitError(consumer: string): unknown {
    this.#runner(consumer); // throws for a name no consumer has
    for (const runner of this.#runners) {
      if (runner.name !== consumer) continue;
      const error = runner.databaseWaitError;
      if (error !== undefined) return error;
    }
    return undefined;
  }

  /** The consumer's first runner; the runners of its partitions share its totals. */
  #runner(consumer: string): ConsumerRunner {
    const runner = this.#runners.find((r) => r.name === consumer);
    if (!runner) {
      // The names as the host has them: a Nest module's `prefix` is part of them.
      throw new ConfigurationError(
        'consumer',
        `no consumer of this host is named ${JSON.stringify(consumer)}; its consumers are ${this.consumers.map((c) => JSON.stringify(c)).join(', ') || 'none'}`,
      );
    }
    return runner;
  }

  /**
   * Connects, declares the topology and starts consuming. Resolves once every consumer
   * consumes; rejects with a `TopologyConflictError` when the broker has conflicting queues or
   * exchanges, with a `PartitionsPluginMissingError` when a consumer has `partitions` and the
   * broker lacks the consistent-hash exchange plugin, with a `PartitionCountChangedError` when
   * the broker holds a consumer's partition set of another count, with a `StartupError` for a schema not migrated or too old or a login refused,
   * or when RabbitMQ cannot be reached within `startTimeoutMs` (the host is then stopped).
   */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new StateError(`consumer host cannot start: it is ${this.#state}`, this.#state);
    }
    this.#state = 'starting';
    const started = new Promise<void>((resolve, reject) => {
      this.#started = { resolve, reject };
    });
    // Rejected by a stop also when nothing waits for it any more (the start checks failed).
    started.catch(() => {});
    this.#amqp.start();
    try {
      // The probe never fails, and waits as long as the checks at most.
      await Promise.all([
        runStartChecks({ ...this.#schemaCheck, amqp: this.#amqp }),
        this.#probeStatementNames?.(),
        this.#checkTransactions?.(),
      ]);
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.#loop = this.#run().catch((error: unknown) => {
      this.#logger.error('consumer host loop failed', { error: errorMessage(error) });
      this.#started?.reject(error);
    });
    const timer = setTimeout(() => {
      const tried = this.#amqp.recentFailures
        .map((f) => `${redactUrl(f.url)}: ${errorMessage(f.error)}`)
        .join('; ');
      const declared = this.#lastStartFailure;
      // Connected, but the consumers' channels or declares kept failing: that is the cause.
      const message =
        declared !== undefined
          ? `the consumers could not start within ${this.#startTimeoutMs} ms (option startTimeoutMs): ${errorMessage(declared)}`
          : `RabbitMQ could not be reached within ${this.#startTimeoutMs} ms (option startTimeoutMs)${
              tried ? `: ${tried}` : ''
            }`;
      this.#started?.reject(new OutboxkitError('consumer-start-timeout', message));
    }, this.#startTimeoutMs);
    try {
      await started;
    } catch (error) {
      await this.stop();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    // Stopped just as the consumers came up: the stop wins.
    if (this.#stopping.signal.aborted) throw stoppedWhileStarting();
    this.#state = 'running';
    this.#cleaner?.start();
    this.#logger.info('consumers started', { consumers: this.consumers });
  }

  /**
   * Stops taking messages, hands back those not started, waits up to `stopTimeoutMs` for running
   * handlers to commit and be acked, then closes the connection. Nothing is acked that did not
   * commit; whatever is still running at the deadline is redelivered later and deduplicated.
   */
  stop(): Promise<void> {
    // One stop for every caller: a second call (a signal handler and a framework hook) resolves
    // when the handlers are done, not at once.
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    if (this.#state === 'new') {
      this.#state = 'stopped';
      return;
    }
    this.#state = 'stopping';
    this.#stopping.abort();
    // A start still waiting for the consumers ends now, saying why, not at startTimeoutMs.
    this.#started?.reject(stoppedWhileStarting());
    const rosters = Promise.all(this.#balancers.map((b) => b.stop()));
    try {
      // Not waited for: the running handlers' time counts from the stop, and a broker that
      // hangs holds a cancel for its whole bound. Closing the channels ends the consumers anyway.
      void Promise.all(this.#runners.map((r) => r.stopConsuming()));
      const drained = Promise.all(this.#runners.map((r) => r.drained())).then(() => true);
      let timer: NodeJS.Timeout | undefined;
      const patience = new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), this.#stopTimeoutMs);
      });
      const finished = await Promise.race([drained, patience]);
      clearTimeout(timer);
      if (!finished) {
        this.#logger.warn(
          'handlers still running at the stop deadline; rolling them back, their messages go back to the queue',
          {
            active: this.#runners.reduce((n, r) => n + r.active, 0),
          },
        );
        // Given up as at a time-out: their transactions are rolled back (a session that does
        // not answer is terminated), so no handler commits after the stop, and its connection
        // goes back to the pool. Their messages are handed back while the channels are open.
        this.#stopDeadline.abort();
        await settleWithin(drained, CLOSE_TIMEOUT_MS);
      }
      // Bounded: a Postgres that hangs would hold the clean-up's DELETE, and the stop, for good.
      // The DELETE only removes old keys: left running, it changes nothing that matters here.
      if (this.#cleaner) await settleWithin(this.#cleaner.stop(), CLOSE_TIMEOUT_MS);
      // Each close gives up on a broker that does not answer; side by side, they give up together.
      await Promise.all(this.#runners.map((r) => r.close()));
    } finally {
      // Before the connection: see `PartitionBalancer.stop` (each close is bounded).
      await rosters;
      // The copies' connection, in any case: it reconnects on its own and would keep the
      // process up.
      await Promise.all([this.#publisher.close(), this.#amqp.close()]);
      await this.#loop;
      this.#state = 'stopped';
      this.#logger.info('consumers stopped', {});
    }
  }

  /** One pass per connection: attach publisher and runners, then wait for the connection to go. */
  async #run(): Promise<void> {
    const stopping = this.#stopping.signal;
    let failures = 0;
    while (!stopping.aborted) {
      const model = await this.#amqp.ready(stopping, { evenIfBlocked: true });
      if (!model) return;
      const closed = whenClosed(model, stopping);
      try {
        // Before declaring anything, also on a reconnect: a process at an old count must not
        // declare its set again while a resize runs, or after one.
        if (this.#partitioned.length > 0 && !drainingHosts.has(this)) {
          await refuseOtherPartitionSets(model, this.#partitioned);
        }
        // Partition sets first, one after another: a missing plugin closes the connection, and
        // only the declare that caused it can tell why.
        if (this.#partitionSets.length > 0) await declareTopology(model, this.#partitionSets);
        await Promise.all(
          this.#runners.map((r) => r.attach(model, r.topology.partitions !== undefined)),
        );
        for (const b of this.#balancers) b.attach(model);
        failures = 0;
        this.#started?.resolve();
      } catch (error) {
        const misconfigured =
          error instanceof TopologyConflictError ||
          error instanceof StartupError ||
          error instanceof PartitionsPluginMissingError ||
          error instanceof PartitionCountChangedError ||
          error instanceof UnpartitionedQueueError;
        if (misconfigured && this.#state === 'starting') {
          this.#started?.reject(error);
          return;
        }
        closed.dispose();
        failures += 1;
        const delay = backoffDelay(this.#reconnectBackoff, failures);
        const log = misconfigured ? this.#logger.error : this.#logger.warn;
        this.#lastStartFailure = error;
        log.call(this.#logger, 'could not start consuming; retrying', {
          error: errorMessage(error),
          retryInMs: delay,
        });
        await abortableDelay(delay, stopping);
        continue;
      }
      await closed.promise;
      if (stopping.aborted) return;
      for (const r of this.#runners) r.detach(model);
      for (const b of this.#balancers) b.detach(model);
    }
  }
}

/**
 * A batch's deliveries stay unacked while its handlers run one after another, after its claim:
 * up to (batchSize + 1) × timeoutMs, which may outlast the broker's consumer timeout, and the
 * broker then closes the channel (nothing is lost: the batch rolls back and comes again, and
 * may again). Refusing such settings would refuse what runs well with fast handlers, so it warns.
 */
function warnOfLongBatches(
  consumers: readonly ResolvedConsumer[],
  brokerConsumerTimeoutMs: number,
  logger: OutboxLogger,
): void {
  for (const c of consumers) {
    const longestMs = (c.batchSize + 1) * c.timeoutMs;
    if (c.batchSize > 1 && longestMs >= brokerConsumerTimeoutMs) {
      logger.warn(
        "a batch may outlast the broker's consumer timeout: its deliveries stay unacked while its handlers run one after another; lower batchSize or timeoutMs, or raise the broker's consumer_timeout (and brokerConsumerTimeoutMs)",
        {
          consumer: c.name,
          batchSize: c.batchSize,
          timeoutMs: c.timeoutMs,
          longestMs,
          brokerConsumerTimeoutMs,
        },
      );
    }
  }
}

/** Resolves when the connection closes or the host stops; `dispose` removes the listeners. */
function whenClosed(
  model: ChannelModel,
  stopping: AbortSignal,
): { promise: Promise<void>; dispose: () => void } {
  let dispose = () => {};
  const promise = new Promise<void>((resolve) => {
    const done = () => {
      dispose();
      resolve();
    };
    dispose = () => {
      model.off('close', done);
      stopping.removeEventListener('abort', done);
    };
    model.once('close', done);
    stopping.addEventListener('abort', done, { once: true });
  });
  return { promise, dispose };
}

function stoppedWhileStarting(): StateError {
  return new StateError('the consumer host was stopped while it was starting', 'stopped');
}

function unlimitedController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
