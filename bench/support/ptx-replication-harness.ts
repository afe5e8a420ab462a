import { randomBytes } from 'node:crypto';
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import {
  applyDefaultReplicationListenerConfigValues,
  createReplicationMutexConcurrencyController,
  createReplicationSemaphoreConcurrencyController,
  type DatabaseReplicationSetupConfig,
  DatabaseSetup,
  defaultReplicationListenerRestartStrategy,
  getDisabledLogger,
  initializeReplicationMessageListener,
  type ReplicationListenerConfig,
  type StoredTransactionalMessage,
} from 'pg-transactional-outbox';
import { onInterrupt } from './bench-cli.js';
import { type BenchQueue, sleep } from './bench-services.js';

/** The package's table name in the benchmark's schema. */
const TABLE = 'ptx_outbox';

/**
 * Inserts `count` rows into a pg-transactional-outbox table in one statement, as its
 * `initializeMessageStorage` writes them: one aggregate (segment) per message, 1 KiB JSON payload.
 */
export async function insertPtxMessages(
  pool: pg.Pool,
  table: string,
  count: number,
  concurrency: 'sequential' | 'parallel',
): Promise<void> {
  await pool.query(
    `INSERT INTO ${table} (id, aggregate_type, aggregate_id, message_type, segment, concurrency, payload)
     SELECT gen_random_uuid(), 'order', i::text, 'order_placed', i::text, $2,
            json_build_object('id', i, 'pad', repeat('x', 1000))::jsonb
     FROM generate_series(1, $1::int) AS i`,
    [count, concurrency],
  );
}

/** How the replication listener handles messages; the rest of its settings stay documented. */
export interface ReplicationSettings {
  readonly name: string;
  /** Messages handled at once, with its semaphore controller; undefined: its default mutex. */
  readonly semaphore?: number;
  /** Connections of the handler's pg pool; undefined: pg's default (10). */
  readonly handlerPool?: number;
  /**
   * The handler's sessions commit with `synchronous_commit=off`: a crash may forget that a
   * message was processed (it is then sent again), not lose one. Not like for like with the
   * relay, whose commits wait for the WAL flush: it shows what the flushes cost.
   */
  readonly asyncCommit?: boolean;
}

export interface ReplicationDrainResult {
  readonly ms: number;
  /** Rows marked processed when the clock stopped. */
  readonly processed: number;
  /** Confirmed publishes, a message handled twice counting twice. */
  readonly published: number;
  readonly handlerErrors: number;
  /** Times the listener restarted its replication stream after an error. */
  readonly restarts: number;
  readonly firstError: string | undefined;
}

type SetupConfig = DatabaseReplicationSetupConfig & { readonly handlerRole: string };

/**
 * pg-transactional-outbox's logical replication set-up, as its README and `DatabaseSetup` lay it
 * out, in a schema of a `wal_level=logical` cluster: its outbox table, a login role with
 * REPLICATION for the listener, another for the handler, a publication of the table's inserts,
 * and a `pgoutput` replication slot. Names are random, as slots and roles are cluster-wide.
 */
export class PtxReplication {
  readonly #pool: pg.Pool;
  readonly #url: string;
  readonly #config: SetupConfig;
  #forget: () => void = () => {};

  private constructor(pool: pg.Pool, url: string, config: SetupConfig) {
    this.#pool = pool;
    this.#url = url;
    this.#config = config;
  }

  /** Creates the table, roles and publication in `schema` (which must exist). */
  static async create(pool: pg.Pool, url: string, schema: string): Promise<PtxReplication> {
    const suffix = randomBytes(4).toString('hex');
    const { rows } = await pool.query<{ db: string }>('SELECT current_database() AS db');
    const setup = new PtxReplication(pool, url, {
      outboxOrInbox: 'outbox',
      database: rows[0]!.db,
      schema,
      table: TABLE,
      listenerRole: `ptx_listener_${suffix}`,
      handlerRole: `ptx_handler_${suffix}`,
      publication: `ptx_pub_${suffix}`,
      replicationSlot: `ptx_slot_${suffix}`,
    });
    setup.#forget = onInterrupt(() => setup.#drop());
    const c = setup.#config;
    // The README leaves creating the roles to the reader; trust authentication needs no password.
    await pool.query(`CREATE ROLE ${c.listenerRole} WITH LOGIN`);
    await pool.query(`CREATE ROLE ${c.handlerRole} WITH LOGIN`);
    await pool.query(DatabaseSetup.dropAndCreateTable(c));
    await pool.query(DatabaseSetup.grantPermissions(c));
    await pool.query(DatabaseSetup.setupReplicationCore(c));
    return setup;
  }

  get table(): string {
    return `${this.#config.schema}.${TABLE}`;
  }

  /**
   * Empties the table, creates the replication slot afresh, then inserts `count` messages, so
   * that the slot streams exactly those to the next listener.
   */
  async prefill(count: number): Promise<void> {
    await this.#dropSlot();
    await this.#pool.query(`TRUNCATE ${this.table}`);
    // Its own statement, outside any transaction, as the package's setup script says.
    await this.#pool.query(DatabaseSetup.setupReplicationSlot(this.#config));
    await insertPtxMessages(this.#pool, this.table, count, 'sequential');
    await this.#pool.query(`VACUUM ANALYZE ${this.table}`);
  }

  /**
   * Starts the package's replication listener with a handler that publishes each message to
   * `queue` and resolves on the publisher confirm, and times it until all `count` rows are
   * marked processed (or `timeoutMs` has passed). The clock starts before the listener connects:
   * its connection set-up, a few milliseconds, is part of the figure.
   */
  async drain(
    channel: ConfirmChannel,
    queue: BenchQueue,
    count: number,
    settings: ReplicationSettings,
    timeoutMs: number,
  ): Promise<ReplicationDrainResult> {
    const c = this.#config;
    const handled = new Set<string>();
    let published = 0;
    let handlerErrors = 0;
    let restarts = 0;
    let firstError: string | undefined;
    const handlerConfig: pg.PoolConfig = {
      connectionString: this.#asUser(c.handlerRole),
      ...(settings.handlerPool !== undefined && { max: settings.handlerPool }),
      ...(settings.asyncCommit && { options: '-c synchronous_commit=off' }),
    };
    // The README's example settings; the polling part of the benchmark uses the same.
    const config: ReplicationListenerConfig = {
      outboxOrInbox: 'outbox',
      dbListenerConfig: { connectionString: this.#asUser(c.listenerRole) },
      dbHandlerConfig: handlerConfig,
      settings: {
        dbSchema: c.schema,
        dbTable: c.table,
        dbPublication: c.publication,
        dbReplicationSlot: c.replicationSlot,
        enableMaxAttemptsProtection: false,
        enablePoisonousMessageProtection: false,
      },
    };
    // Its own restart strategy, only watched: a restart replays the stream from the last
    // acknowledged position, which shows up as messages published twice.
    const restart = defaultReplicationListenerRestartStrategy(
      applyDefaultReplicationListenerConfigValues(config),
    );
    const start = performance.now();
    const [shutdown] = initializeReplicationMessageListener(
      config,
      {
        handle: async (message: StoredTransactionalMessage) => {
          await publishConfirmed(channel, queue, message);
          published += 1;
          handled.add(message.id);
        },
        handleError: async (error) => {
          handlerErrors += 1;
          firstError ??= error.message;
        },
      },
      getDisabledLogger(),
      {
        concurrencyStrategy:
          settings.semaphore === undefined
            ? createReplicationMutexConcurrencyController()
            : createReplicationSemaphoreConcurrencyController(settings.semaphore),
        listenerRestartStrategy: async (error, logger, outboxOrInbox) => {
          restarts += 1;
          firstError ??= error.message;
          return restart(error, logger, outboxOrInbox);
        },
      },
    );
    try {
      // Published is not yet processed: the handler's transaction marks the row after the
      // confirm. Count in memory first, then ask the table (a scan) only at the end.
      while (handled.size < count && performance.now() - start < timeoutMs) await sleep(2);
      let processed = 0;
      while (performance.now() - start < timeoutMs) {
        processed = await this.processed();
        if (processed >= count) break;
        await sleep(2);
      }
      return {
        ms: performance.now() - start,
        processed,
        published,
        handlerErrors,
        restarts,
        firstError,
      };
    } finally {
      await shutdown();
    }
  }

  async processed(): Promise<number> {
    const { rows } = await this.#pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${this.table} WHERE processed_at IS NOT NULL`,
    );
    return rows[0]!.n;
  }

  /** Drops the slot, publication, table and roles (the schema is the caller's). */
  async drop(): Promise<void> {
    this.#forget();
    await this.#drop();
  }

  async #drop(): Promise<void> {
    const c = this.#config;
    await this.#dropSlot().catch(() => {});
    await this.#pool.query(`DROP PUBLICATION IF EXISTS ${c.publication}`).catch(() => {});
    await this.#pool.query(`DROP TABLE IF EXISTS ${this.table}`).catch(() => {});
    for (const role of [c.listenerRole, c.handlerRole]) {
      await this.#pool.query(`DROP OWNED BY ${role}`).catch(() => {});
      await this.#pool.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    }
  }

  /** Drops the slot once the last listener's walsender has let go of it. */
  async #dropSlot(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await this.#pool.query<{ active: boolean }>(
        'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
        [this.#config.replicationSlot],
      );
      if (rows.length === 0) return;
      if (!rows[0]!.active) {
        await this.#pool.query('SELECT pg_drop_replication_slot($1)', [
          this.#config.replicationSlot,
        ]);
        return;
      }
      if (Date.now() > deadline) {
        throw new Error(`replication slot ${this.#config.replicationSlot} still in use`);
      }
      await sleep(20);
    }
  }

  #asUser(role: string): string {
    const url = new URL(this.#url);
    url.username = role;
    url.password = '';
    return url.toString();
  }
}

/**
 * The benchmark's message handler for the package's listeners: publishes the stored message to
 * the queue and resolves on the broker's confirm, as the relay's publish does.
 */
export function publishConfirmed(
  channel: ConfirmChannel,
  queue: BenchQueue,
  message: StoredTransactionalMessage,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    channel.publish(
      queue.exchange,
      queue.routingKey,
      Buffer.from(JSON.stringify(message.payload)),
      {
        persistent: true,
        mandatory: true,
        messageId: message.id,
        contentType: 'application/json',
      },
      (error) => (error ? reject(error) : resolve()),
    );
  });
}
