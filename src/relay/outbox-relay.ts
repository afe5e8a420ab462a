import { setMaxListeners } from 'node:events';
import { clearTimeout, setTimeout } from 'node:timers';
import type pg from 'pg';
import { AmqpConnection } from '../amqp/amqp-connection.js';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { amqpUrlList } from '../amqp/amqp-urls.js';
import { CLOSE_TIMEOUT_MS } from '../amqp/close-within.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { StateError } from '../errors/state-error.js';
import { createPool } from '../sql/create-pool.js';
import { databaseTlsConfig } from '../sql/database-tls.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { poolMax } from '../sql/pool-size.js';
import { RELAY_PRIVILEGES } from '../start/check-privileges.js';
import { runStartChecks } from '../start/start-checks.js';
import { redactUrl } from '../util/logger.js';
import { RepeatedWarning } from '../util/repeated-warning.js';
import { WakeSignal } from '../util/wake-signal.js';
import { settleWithin } from '../util/with-timeout.js';
import { ClaimCursor } from './claim-cursor.js';
import { DatabaseHealth, type RelayDatabaseProblem } from './database-health.js';
import { ExchangeRegistry } from './exchange-registry.js';
import { OutboxListener } from './outbox-listener.js';
import { BATCHES_PER_LANE, RelayLane } from './relay-lane.js';
import {
  type RelayOptions,
  type ResolvedRelayOptions,
  resolveRelayOptions,
} from './relay-options.js';
import { relayQueries } from './relay-queries.js';
import { emptyRelayStats, type RelayStats } from './relay-stats.js';
import { relayConnections, sharedPoolWarning } from './shared-pool-size.js';
import { stallTimeoutMs } from './stall-timeout.js';

let relayCount = 0;

/**
 * How long past `stopTimeoutMs` a stop waits for the lanes' last statements (writing what was
 * confirmed, COMMIT) before it drops their connections: time enough for a database that
 * answers, short enough that one that hangs cannot hold the stop for its `query_timeout`.
 */
const ABANDON_AFTER_MS = CLOSE_TIMEOUT_MS;

/**
 * At most one `outbox rows will be retried` line per this span while it repeats (a queue that
 * nacks every publish gives one per batch, many a second); the lines' counts still add up.
 */
export const RETRIED_WARNING_INTERVAL_MS = 10_000;

/**
 * Moves committed outbox rows to RabbitMQ and deletes each row only once the broker confirmed
 * it. Several relays may run on one outbox. Runs in-process (`start`/`stop`) or as the
 * `outboxkit relay` command.
 *
 * @example
 * const relay = new OutboxRelay({ databaseUrl, amqpUrl });
 * await relay.start();
 * // ...
 * await relay.stop();
 */
export class OutboxRelay {
  readonly options: ResolvedRelayOptions;
  readonly #stats: RelayStats = emptyRelayStats();
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;
  readonly #amqp: AmqpConnection;
  readonly #exchanges: ExchangeRegistry;
  readonly #wake = new WakeSignal();
  readonly #listener: OutboxListener | undefined;
  readonly #stopping = new AbortController();
  readonly #giveUp = new AbortController();
  readonly #abandon = new AbortController();
  readonly #retriedWarning: RepeatedWarning;
  readonly #connectionLimitWarning: RepeatedWarning;
  readonly #database: DatabaseHealth;
  #lanes: Promise<void>[] = [];
  #state: 'new' | 'running' | 'stopping' | 'stopped' = 'new';
  #stopped: Promise<void> | undefined;

  constructor(options: RelayOptions) {
    this.options = resolveRelayOptions(options);
    const o = this.options;
    this.#retriedWarning = new RepeatedWarning(
      o.logger,
      'outbox rows will be retried',
      RETRIED_WARNING_INTERVAL_MS,
    );
    this.#connectionLimitWarning = new RepeatedWarning(
      o.logger,
      'Postgres refused the relay another connection (too many connections: max_connections, or a CONNECTION LIMIT of the role or the database); it goes on with the connections it holds, and tries for more less often. Lower `concurrency`, raise the limit, or see docs/operations.md, "Connections"',
      RETRIED_WARNING_INTERVAL_MS,
    );
    this.#database = new DatabaseHealth(
      o.schema,
      o.databaseUrl ? redactUrl(o.databaseUrl) : 'the given pool',
    );
    // Every lane, and the retry lane, waits on these signals at once: not a listener leak.
    const waiters = 4 * (o.concurrency * BATCHES_PER_LANE + 2);
    setMaxListeners(waiters, this.#stopping.signal, this.#giveUp.signal, this.#abandon.signal);
    this.#ownsPool = !o.pool;
    // LISTEN keeps one connection for the relay's life: a pool of one would leave the lanes none,
    // and the relay would publish nothing, without an error.
    if (o.pool && o.listen && poolMax(o.pool) === 1) {
      throw new ConfigurationError(
        'pool',
        "holds one connection, which LISTEN keeps for the relay's life, leaving none to publish with: give the relay a pool with `max` of 2 or more (or `databaseUrl`, for a pool of its own), or set `listen: false`",
      );
    }
    // The longest a relay transaction may stall, seen from either side.
    const stallMs = stallTimeoutMs(o.publishTimeoutMs);
    this.#pool =
      o.pool ??
      createPool(
        {
          connectionString: o.databaseUrl,
          // One to spare beyond what the lanes and LISTEN hold at most.
          max: relayConnections(o.concurrency, true) + 1,
          // On a connection whose peer vanished without a FIN or RST (a failover, an expired NAT
          // or firewall entry), a statement never gets its answer and TCP takes minutes to give
          // up, or never does behind a proxy: the lane, and `stop()` with it, would hang that
          // long. A statement unanswered for as long as Postgres lets a transaction stall is
          // taken as a dead link, and its client is dropped.
          query_timeout: stallMs,
          // A relay that stalls while holding claimed rows must not keep them locked forever:
          // its claim transactions set idle_in_transaction_session_timeout themselves, on any pool.
          application_name: 'outboxkit-relay',
          ...databaseTlsConfig(o.databaseUrl, o.databaseTls),
        },
        o.logger,
      );
    relayCount += 1;
    const amqpUrls = amqpUrlList(o.amqpUrl);
    this.#amqp = new AmqpConnection({
      urls: amqpUrls,
      tls: amqpTlsFor(amqpUrls, o.amqpTls),
      heartbeatSeconds: o.heartbeatSeconds,
      reconnectBackoff: o.reconnectBackoff,
      logger: o.logger,
      connectionName: o.connectionName ?? `outboxkit-relay-${process.pid}-${relayCount}`,
    });
    this.#amqp.on('connected', () => this.#wake.wake());
    this.#exchanges = new ExchangeRegistry(this.#amqp, {
      declarations: o.exchanges,
      logger: o.logger,
    });
    const queries = relayQueries(o.schema);
    this.#listener = o.listen
      ? new OutboxListener(
          this.#pool,
          { listenSql: queries.listen, name: outboxTables(o.schema).notifyChannelName },
          () => this.#wake.wake(),
          o.logger,
          { backoff: o.reconnectBackoff, pollIntervalMs: o.pollIntervalMs },
        )
      : undefined;
  }

  /** RabbitMQ connections made; above 1 after a reconnect. */
  get amqpConnects(): number {
    return this.#amqp.connects;
  }

  /** LISTEN connections made; above 1 after a reconnect. */
  get listenConnects(): number {
    return this.#listener?.connects ?? 0;
  }

  get isRunning(): boolean {
    return this.#state === 'running';
  }

  /** Whether the relay can publish now: connected to RabbitMQ and not blocked by an alarm. */
  get isConnected(): boolean {
    return this.#amqp.isReady;
  }

  /**
   * What kept the relay's last claim from the database (`unreachable`, or `misconfigured`: a
   * schema not migrated, a login or database refused), or undefined since a claim worked. The
   * start checks refuse a misconfiguration at start; this finds one the start could not see,
   * the database being down then.
   */
  get databaseProblem(): RelayDatabaseProblem | undefined {
    return this.#database.problem;
  }

  /**
   * Checks the schema and the logins, starts the lanes and returns; connections are made (and
   * remade) in the background, so a broker or database that is down at start only delays
   * publishing. Rejects with a `StartupError` (the relay is then stopped) for what no retry
   * mends: a schema not migrated or older than this version needs, credentials, a database or
   * a virtual host refused. Waits at most 5 s for these answers; a service that has not
   * answered by then is taken as down.
   */
  async start(): Promise<void> {
    if (this.#state !== 'new')
      throw new StateError(`relay cannot start: it is ${this.#state}`, this.#state);
    this.#state = 'running';
    const o = this.options;
    this.#amqp.start();
    try {
      await runStartChecks({
        db: this.#pool,
        schema: o.schema,
        where: o.databaseUrl ? redactUrl(o.databaseUrl) : 'the given pool',
        privileges: RELAY_PRIVILEGES,
        amqp: this.#amqp,
      });
    } catch (error) {
      // Stopped meanwhile: the checks failed because the stop closed the pool, not the caller.
      if (this.#stopping.signal.aborted) throw stoppedWhileStarting();
      await this.stop();
      throw error;
    }
    // Stopped while the checks ran: the stop closed the connections; start nothing after it.
    if (this.#stopping.signal.aborted) throw stoppedWhileStarting();
    this.#listener?.start();
    const ctx = {
      options: o,
      pool: this.#pool,
      amqp: this.#amqp,
      exchanges: this.#exchanges,
      queries: relayQueries(o.schema, o.maxMessageBytes),
      cursor: new ClaimCursor(),
      wake: this.#wake,
      stats: this.#stats,
      database: this.#database,
      retriedWarning: this.#retriedWarning,
      connectionLimitWarning: this.#connectionLimitWarning,
      stopping: this.#stopping.signal,
      giveUp: this.#giveUp.signal,
      abandon: this.#abandon.signal,
    };
    const lanes = [new RelayLane(ctx, true)];
    for (let i = 0; i < o.concurrency; i += 1) lanes.push(new RelayLane(ctx, false));
    this.#lanes = lanes.map((lane) => lane.run());
    const crowded = this.#ownsPool
      ? undefined
      : sharedPoolWarning(this.#pool, o.concurrency, o.listen);
    if (crowded) o.logger.warn(crowded, { concurrency: o.concurrency });
    o.logger.info('relay started', {
      schema: o.schema,
      concurrency: o.concurrency,
      batchSize: o.batchSize,
    });
  }

  /**
   * This relay's running totals, as of now: a copy, which later work leaves unchanged. A method,
   * as on `ConsumerHost`.
   */
  stats(): Readonly<RelayStats> {
    return Object.freeze({ ...this.#stats });
  }

  /** Wakes the relay now, as a notification would. */
  wake(): void {
    this.#wake.wake();
  }

  /**
   * Stops claiming, waits up to `stopTimeoutMs` for in-flight confirms, deletes what was acked,
   * releases the rest untouched, then closes channels and connections.
   */
  stop(): Promise<void> {
    // One stop for every caller: a second call (a signal handler and a framework hook) resolves
    // when the stop is done, not at once.
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    // Never started (an application whose boot failed before it came to the relay): there is
    // nothing to settle, and a "relay stopped" line would say it had run.
    if (this.#state === 'new') {
      this.#state = 'stopped';
      if (this.#ownsPool) await settleWithin(this.#pool.end(), CLOSE_TIMEOUT_MS);
      return;
    }
    const wasRunning = this.#state === 'running';
    this.#state = 'stopping';
    this.#stopping.abort();
    this.#wake.wake();
    const { stopTimeoutMs, logger } = this.options;
    const patience = setTimeout(() => this.#giveUp.abort(), stopTimeoutMs);
    const lastResort = setTimeout(() => {
      logger.warn("relay stop: Postgres does not answer; dropping the lanes' connections", {
        afterMs: stopTimeoutMs + ABANDON_AFTER_MS,
      });
      this.#abandon.abort(new Error('the relay stopped while Postgres did not answer'));
    }, stopTimeoutMs + ABANDON_AFTER_MS);
    try {
      if (wasRunning) await Promise.all(this.#lanes);
    } finally {
      clearTimeout(patience);
      clearTimeout(lastResort);
      // Side by side: each is bounded, and on a hung link one after another would add up.
      const closeDatabase = async () => {
        await this.#listener?.stop();
        // A connection still being made to a database that hangs holds pg's end() until its
        // connect timeout (10 s): past the close bound, that ends in the background.
        if (this.#ownsPool) await settleWithin(this.#pool.end(), CLOSE_TIMEOUT_MS);
      };
      await Promise.all([closeDatabase(), this.#exchanges.close(), this.#amqp.close()]);
      this.#retriedWarning.flush();
      this.#connectionLimitWarning.flush();
      this.#state = 'stopped';
      this.options.logger.info('relay stopped', { ...this.#stats });
    }
  }
}

function stoppedWhileStarting(): StateError {
  return new StateError('the relay was stopped while it was starting', 'stopped');
}
