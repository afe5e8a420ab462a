import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { AmqpUrls } from '../../src/amqp/amqp-urls.js';
import type {
  ConsumeContext,
  ConsumerDefinition,
  MessageInfo,
} from '../../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { type ConsumerStats, emptyConsumerStats } from '../../src/consumer/consumer-stats.js';
import {
  deadLetterQueueName,
  topologyOf,
  topologyQueueNames,
} from '../../src/consumer/consumer-topology.js';
import { migrate } from '../../src/migrate/migrate.js';
import { OUTBOXKIT_HEADERS } from '../../src/protocol/dead-letter-headers.js';
import type { RelayOptions } from '../../src/relay/relay-options.js';
import { outboxTables } from '../../src/sql/outbox-tables.js';
import type { OutboxMessage } from '../../src/writer/outbox-message.js';
import { OutboxWriter } from '../../src/writer/outbox-writer.js';
import { uniqueName } from '../support/test-database.js';
import { waitFor } from '../support/wait-for.js';
import { BrokerAdmin } from './broker-admin.js';
import { sleep } from './exec.js';
import { recordResult, type ScenarioResult } from './fault-report.js';
import {
  CountingLogger,
  emptyRelayCounts,
  InProcessRelay,
  type RelayCounts,
  type RelayHandle,
  RelayProcess,
} from './relay-handles.js';

/** What the business committed for one message, carried as its payload. */
export interface LedgerPayload {
  readonly msgId: string;
  readonly key: string;
  /** The key's version after this message's transaction: its commit order within the key. */
  readonly version: number;
  readonly pad?: string;
}

/** Where a committed message is expected to end up. */
export type Fate = 'effect' | 'dead-letter' | 'parked';

/** One message of a business transaction. */
export interface BusinessMessage {
  readonly key: string;
  readonly fate?: Fate;
  readonly routingKey?: string;
  /** Replaces the ledger payload (malformed input). */
  readonly payload?: (ledger: LedgerPayload) => unknown;
  readonly contentType?: string;
  /** Pads the payload to about this many bytes (oversize input). */
  readonly padBytes?: number;
  /**
   * Also writes, in the same transaction, a copy with the same message id that nothing is bound
   * to receive (`TWIN_ROUTING_KEY`): one message id twice in the outbox. The copy is expected
   * parked; the ledger row keeps its own fate.
   */
  readonly unroutableTwin?: boolean;
  /** Written without an ordering key, even in an ordered scenario (no order promised). */
  readonly unkeyed?: boolean;
}

/** The routing key of `unroutableTwin` copies: bound to no queue. */
export const TWIN_ROUTING_KEY = 'nowhere.twin';

export interface ConsumerTweaks {
  /** Sees every delivery that parses, before any transaction (copies and redeliveries too). */
  readonly onDelivery?: (payload: unknown, message: MessageInfo) => void;
  /** Runs in the handler's transaction before the effect is written. */
  readonly before?: (payload: LedgerPayload, context: ConsumeContext) => Promise<void>;
  /** Runs in the handler's transaction after the effect is written (a throw rolls it back). */
  readonly after?: (payload: LedgerPayload, context: ConsumeContext) => Promise<void>;
  readonly definition?: Partial<ConsumerDefinition<LedgerPayload>>;
}

export interface ScenarioOptions {
  readonly name: string;
  /** A Postgres URL for one application name: the machine's cluster or a private one. */
  readonly databaseUrl: (applicationName: string) => string;
  /** One node's URL, or the nodes of a cluster (relays and consumers fail over between them). */
  readonly amqpUrl: AmqpUrls;
  /** Keyed messages and an ordered consumer, and per-key order checked. Default true. */
  readonly ordered?: boolean;
  readonly queueType?: 'classic' | 'quorum';
  /** AMQP heartbeat of relays and consumers; short, so that dead links are noticed quickly. Default 1. */
  readonly heartbeatSeconds?: number;
  /** Longest time from healing to everything accounted for. Default 30 s. */
  readonly drainBoundMs?: number;
  readonly consumer?: ConsumerTweaks;
  /** Largest payload the writer accepts. */
  readonly maxMessageBytes?: number;
  /**
   * Business and consumer sessions commit without waiting for the WAL flush. Only where
   * Postgres is never crashed: there it loses nothing and halves the cost of every transaction.
   * Default true; a scenario that crashes Postgres turns it off.
   */
  readonly asyncCommit?: boolean;
  /** Connections of the business's pool. Default 6. */
  readonly appPoolSize?: number;
  /** The consumers use the business's pool, as an application with one pool does. */
  readonly shareAppPool?: boolean;
  /**
   * The broker's own view of the scenario's queues (ready, unacked, consumers), added to a
   * failed drain: messages counted unacked with no live consumer are the broker's, not ours.
   */
  readonly brokerState?: (queues: readonly string[]) => Promise<string>;
}

export interface TrafficOptions {
  /** Messages to commit (rolled-back ones not counted). */
  readonly total: number;
  readonly perTransaction?: number;
  /** Business writers running side by side. */
  readonly writers?: number;
  /** Pause between a writer's transactions, so the stream lasts through the fault. */
  readonly pauseMs?: number;
  readonly keys?: number;
  /** Every n-th transaction of a writer is rolled back after writing: its messages must never show up. */
  readonly rollbackEvery?: number;
  /** Per message, by index. */
  readonly message?: (index: number) => Partial<BusinessMessage>;
}

export interface Traffic {
  readonly done: Promise<void>;
  committed(): number;
  /** Ends the stream early: each writer finishes its transaction in progress and stops. */
  stop(): void;
  /** The longest business transaction so far, waiting for a connection included. */
  slowestMs(): number;
}

/** What the checker saw besides the ledger: the counts that show the fault happened. */
export interface Observed {
  readonly relays: RelayCounts;
  readonly perRelay: readonly RelayCounts[];
  readonly consumer: ConsumerStats;
  readonly consumerConnects: number;
  readonly duplicatesDelivered: number;
  readonly duplicatesAbsorbed: number;
  readonly retries: number;
  readonly reconnects: number;
  readonly deadLetters: ReadonlyMap<string, string>;
  readonly parked: ReadonlyMap<string, string>;
}

export interface FinishOptions {
  /** Describes what shows the fault happened; throws when it did not (the scenario then fails). */
  readonly evidence: (observed: Observed) => string | Promise<string>;
}

/** How far the drain got. */
interface Progress {
  readonly committed: number;
  /** Ledger rows with an effect or a parked row. */
  readonly settled: number;
  readonly outbox: number;
  /** Messages in the consumer's queue and delay queues. */
  readonly waiting: number;
  readonly deadLetters: number;
  readonly received: number;
  readonly handled: number;
}

const unhandled: unknown[] = [];
process.on('unhandledRejection', (reason) => {
  unhandled.push(reason);
  console.error('unhandled rejection in the fault suite:', reason);
});

const ROLLBACK_MARK = new Error('business transaction rolled back on purpose');

/** Longest a relay or consumer may take to stop: their own stop timeouts plus closes. */
const STOP_BOUND_MS = 20_000;

export function isLedgerPayload(value: unknown): value is LedgerPayload {
  const v = value as Partial<LedgerPayload> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.msgId === 'string' &&
    typeof v.key === 'string' &&
    typeof v.version === 'number'
  );
}

/**
 * The effect of a ledger message, written in the handler's transaction: a row of `effects`
 * (no unique constraint, so a message applied twice shows as two rows). Consumers in child
 * processes (the soak's) write the same row.
 */
export async function writeLedgerEffect(
  schema: string,
  payload: LedgerPayload,
  context: ConsumeContext,
): Promise<void> {
  // Kysely quotes each part of `schema.table` itself. The version comes from the committed
  // ledger row (the payload's copy serves when there is none: an effect of a rolled-back
  // transaction must still show up).
  await sql`INSERT INTO ${sql.table(`${schema}.effects`)} (msg_id, key, version, attempt, consumer)
    VALUES (${payload.msgId}, ${payload.key},
      coalesce((SELECT version FROM ${sql.table(`${schema}.ledger`)} WHERE msg_id = ${payload.msgId}), ${payload.version}),
      ${context.attempt}, ${context.consumer})`.execute(context.trx);
}

/** A failure of a business transaction that the business would retry (connection lost, deadlock). */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^(23|42|22)/.test(code)) return false;
  return error !== ROLLBACK_MARK;
}

/**
 * One fault scenario's world: a schema of its own with the outbox and a business ledger, an
 * exchange and a consumer of its own, relays and consumer hosts, business traffic, and at the
 * end the drain and the ledger check. Counting follows the issue's method: the ledger is what
 * the business committed (written in the same transactions as the outbox rows), the effect table
 * has no unique constraint, so every double effect shows.
 */
export class FaultScenario {
  readonly options: ScenarioOptions;
  readonly sid: string;
  readonly schema: string;
  readonly exchange: string;
  readonly definition: ConsumerDefinition<LedgerPayload>;
  readonly appPool: pg.Pool;
  readonly admin: BrokerAdmin;
  readonly #consumerPool: pg.Pool;
  // biome-ignore lint/suspicious/noExplicitAny: the ledger tables are the suite's own
  readonly #consumerDb: Kysely<any>;
  readonly #writer: OutboxWriter;
  readonly #hosts: Array<{ host: ConsumerHost; logger: CountingLogger }> = [];
  readonly #relays: RelayHandle[] = [];
  /** Every relay ever started, stopped or not, for the counts. */
  readonly #allRelays: RelayHandle[] = [];
  readonly #deliveries = new Map<string, number>();
  readonly #traffic: Promise<void>[] = [];
  readonly #unhandledAtStart = unhandled.length;
  #transactions = 0;
  #stopping = false;
  #healedAt: number | undefined;
  readonly #openedAt = Date.now();
  readonly #marks: string[] = [];
  result: ScenarioResult | undefined;

  private constructor(options: ScenarioOptions, sid: string) {
    this.options = options;
    this.sid = sid;
    this.schema = `okf_${sid}`;
    this.exchange = `okf.${sid}.events`;
    const asyncCommit = options.asyncCommit ?? true;
    this.appPool = guardedPool(
      options.databaseUrl(this.applicationName('app')),
      options.appPoolSize ?? 6,
      asyncCommit,
    );
    this.#consumerPool = options.shareAppPool
      ? this.appPool
      : guardedPool(options.databaseUrl(this.applicationName('consumer')), 8, asyncCommit);
    this.#consumerDb = new Kysely({ dialect: new PostgresDialect({ pool: this.#consumerPool }) });
    this.#writer = new OutboxWriter({
      schema: this.schema,
      ...(options.maxMessageBytes !== undefined && { maxMessageBytes: options.maxMessageBytes }),
    });
    this.admin = new BrokerAdmin(options.amqpUrl);
    this.definition = this.#consumerDefinition();
  }

  static async open(options: ScenarioOptions): Promise<FaultScenario> {
    const scenario = new FaultScenario(options, uniqueName('s').slice(2));
    try {
      await scenario.#createSchema();
      scenario.mark('schema');
    } catch (error) {
      await scenario.close();
      throw error;
    }
    return scenario;
  }

  get ordered(): boolean {
    return this.options.ordered ?? true;
  }

  get heartbeatSeconds(): number {
    return this.options.heartbeatSeconds ?? 1;
  }

  /** Sessions are told apart by application name: `okf_<scenario>_<role>`, relays numbered. */
  applicationName(role: 'app' | 'consumer' | 'relay', n = 0): string {
    return `okf_${this.sid}_${role}${role === 'relay' ? n : ''}`;
  }

  /** Whether one of the relay's sessions is inside a transaction: a batch claimed and not settled. */
  async inTransaction(relay: RelayHandle): Promise<boolean> {
    const { rows } = await this.appPool.query(
      `SELECT 1 FROM pg_stat_activity
       WHERE application_name = $1 AND xact_start IS NOT NULL AND query NOT LIKE 'LISTEN%'`,
      [relay.applicationName],
    );
    return rows.length > 0;
  }

  table(name: 'ledger' | 'effects' | 'accounts'): string {
    return `"${this.schema}".${name}`;
  }

  get tables() {
    return outboxTables(this.schema);
  }

  async #createSchema(): Promise<void> {
    await migrate(this.appPool, { schema: this.schema });
    await this.appPool.query(`
      CREATE TABLE ${this.table('accounts')} (key text PRIMARY KEY, version int NOT NULL);
      CREATE TABLE ${this.table('ledger')} (
        msg_id text PRIMARY KEY, key text NOT NULL, version int NOT NULL, fate text NOT NULL);
      -- No unique constraint: a message applied twice must show as two rows.
      CREATE TABLE ${this.table('effects')} (
        id bigserial PRIMARY KEY, msg_id text NOT NULL, key text NOT NULL, version int NOT NULL,
        attempt int NOT NULL, consumer text NOT NULL);
      CREATE INDEX ON ${this.table('effects')} (msg_id);`);
  }

  #consumerDefinition(): ConsumerDefinition<LedgerPayload> {
    const tweaks = this.options.consumer ?? {};
    return {
      name: `okf.${this.sid}`,
      exchange: this.exchange,
      routingKeys: ['ledger.#'],
      queueType: this.options.queueType ?? 'quorum',
      ordered: this.ordered,
      concurrency: 4,
      retry: { maxAttempts: 5, backoff: { initialMs: 50, maxMs: 400 } },
      timeoutMs: 10_000,
      // Runs for every delivery that parses, before any transaction: the place to count copies.
      validate: (payload: unknown, info: MessageInfo) => {
        tweaks.onDelivery?.(payload, info);
        if (info.attempt === 1 && info.messageId !== undefined) {
          this.#deliveries.set(info.messageId, (this.#deliveries.get(info.messageId) ?? 0) + 1);
        }
        if (!isLedgerPayload(payload)) throw new Error('payload is not a ledger message');
        return payload;
      },
      handler: async (payload, context) => {
        await tweaks.before?.(payload, context);
        await writeLedgerEffect(this.schema, payload, context);
        await tweaks.after?.(payload, context);
      },
      ...tweaks.definition,
    };
  }

  /** Starts a consumer host in this process (consumers declare the exchange: start them first). */
  async startConsumer(options: { amqpUrl?: AmqpUrls } = {}): Promise<ConsumerHost> {
    const logger = new CountingLogger(`consumer${this.#hosts.length + 1}`);
    const host = new ConsumerHost({
      db: this.#consumerDb,
      amqpUrl: options.amqpUrl ?? this.options.amqpUrl,
      schema: this.schema,
      consumers: [this.definition as ConsumerDefinition],
      heartbeatSeconds: this.heartbeatSeconds,
      reconnectBackoff: { initialMs: 50, maxMs: 500 },
      publishTimeoutMs: 5000,
      startTimeoutMs: 60_000,
      stopTimeoutMs: 10_000,
      retention: false,
      logger,
    });
    this.#hosts.push({ host, logger });
    await host.start();
    this.mark('consumer up');
    return host;
  }

  /**
   * A relay in this process, with quick settings. `via` rewrites its Postgres URL (through a
   * proxy, say).
   */
  async startRelay(
    options: Partial<RelayOptions> = {},
    via: (databaseUrl: string) => string = (url) => url,
  ): Promise<InProcessRelay> {
    const heartbeatSeconds = options.heartbeatSeconds ?? this.heartbeatSeconds;
    const n = this.#allRelays.length + 1;
    const relay = await InProcessRelay.start(`relay${n}`, this.applicationName('relay', n), {
      databaseUrl: via(this.options.databaseUrl(this.applicationName('relay', n))),
      amqpUrl: this.options.amqpUrl,
      schema: this.schema,
      batchSize: 100,
      concurrency: 4,
      pollIntervalMs: 200,
      heartbeatSeconds,
      publishTimeoutMs: Math.max(2000, 2 * heartbeatSeconds * 1000),
      stopTimeoutMs: 3000,
      reconnectBackoff: { initialMs: 50, maxMs: 500 },
      ...options,
      retry: { backoff: { initialMs: 50, maxMs: 500 }, ...options.retry },
    });
    this.#relays.push(relay);
    this.#allRelays.push(relay);
    this.mark(`${relay.name} up`);
    return relay;
  }

  /** `outboxkit relay` as a child process, for faults where it must die. */
  async spawnRelay(
    options: { amqpUrl?: AmqpUrls; args?: readonly string[] } = {},
  ): Promise<RelayProcess> {
    const n = this.#allRelays.length + 1;
    const relay = await RelayProcess.spawn(`relay${n}`, {
      applicationName: this.applicationName('relay', n),
      databaseUrl: this.options.databaseUrl(this.applicationName('relay', n)),
      // The CLI takes a cluster's nodes as one comma-separated list.
      amqpUrl: [options.amqpUrl ?? this.options.amqpUrl].flat().join(','),
      schema: this.schema,
      // The suite's defaults, unless the scenario sets them: the CLI refuses a flag given twice.
      args: [
        ...(['--batch-size', '100', '--concurrency', '4'] as const).flatMap((value, i, all) =>
          i % 2 === 0 && !options.args?.includes(value) ? [value, all[i + 1]!] : [],
        ),
        ...(options.args ?? []),
      ],
    });
    this.#relays.push(relay);
    this.#allRelays.push(relay);
    return relay;
  }

  /**
   * Commits one business transaction: for each message, bumps its key's version, writes the
   * ledger row, and adds the outbox row, all in one transaction. Retried like a business would
   * when the database goes away; an unknown outcome is settled by looking for the ledger row.
   */
  async commit(
    messages: readonly BusinessMessage[],
    options: { rollback?: boolean } = {},
  ): Promise<string[]> {
    const txn = this.#transactions++;
    const ids = messages.map((_, i) => `${this.sid}-${txn}-${i}`);
    const deadline = Date.now() + 60_000;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.#commitOnce(ids, messages, options.rollback ?? false);
        return ids;
      } catch (error) {
        if (error === ROLLBACK_MARK) return ids;
        if (!isRetryable(error) || Date.now() > deadline || this.#stopping) throw error;
        await sleep(Math.min(1000, 25 * 2 ** attempt));
        if (await this.#isCommitted(ids[0]!).catch(() => false)) return ids;
      }
    }
  }

  async #isCommitted(msgId: string): Promise<boolean> {
    const { rows } = await this.appPool.query(
      `SELECT 1 FROM ${this.table('ledger')} WHERE msg_id = $1`,
      [msgId],
    );
    return rows.length > 0;
  }

  async #commitOnce(
    ids: string[],
    messages: readonly BusinessMessage[],
    rollback: boolean,
  ): Promise<void> {
    const client = await this.appPool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      // Keys in sorted order, so two business transactions cannot deadlock on their account rows.
      const order = messages
        .map((m, i) => ({ m, id: ids[i]! }))
        .sort((a, b) => (a.m.key < b.m.key ? -1 : a.m.key > b.m.key ? 1 : 0));
      const outbox: OutboxMessage[] = [];
      for (const { m, id } of order) {
        const { rows } = await client.query<{ version: number }>(
          `INSERT INTO ${this.table('accounts')} (key, version) VALUES ($1, 1)
           ON CONFLICT (key) DO UPDATE SET version = accounts.version + 1 RETURNING version`,
          [m.key],
        );
        const version = rows[0]!.version;
        await client.query(
          `INSERT INTO ${this.table('ledger')} (msg_id, key, version, fate) VALUES ($1, $2, $3, $4)`,
          [id, m.key, version, m.fate ?? 'effect'],
        );
        outbox.push(this.outboxMessage(id, m, version));
        if (m.unroutableTwin) {
          outbox.push({ ...this.outboxMessage(id, m, version), routingKey: TWIN_ROUTING_KEY });
        }
      }
      await this.#writer.addMany(client, outbox);
      if (rollback) {
        await client.query('ROLLBACK');
        throw ROLLBACK_MARK;
      }
      await client.query('COMMIT');
    } catch (error) {
      if (error !== ROLLBACK_MARK) {
        broken = error as Error;
        await client.query('ROLLBACK').catch(() => {});
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /** The outbox message for a ledger row. */
  outboxMessage(msgId: string, m: BusinessMessage, version: number): OutboxMessage {
    const ledger: LedgerPayload = {
      msgId,
      key: m.key,
      version,
      ...(m.padBytes !== undefined && { pad: 'x'.repeat(m.padBytes) }),
    };
    return {
      exchange: this.exchange,
      routingKey: m.routingKey ?? 'ledger.event',
      messageId: msgId,
      payload: m.payload ? m.payload(ledger) : ledger,
      ...(m.contentType !== undefined && { contentType: m.contentType }),
      ...(this.ordered && !m.unkeyed && { orderingKey: m.key }),
    };
  }

  /** Business transactions in the background until `total` messages are committed. */
  traffic(options: TrafficOptions): Traffic {
    const {
      total,
      perTransaction = 5,
      writers = 2,
      pauseMs = 0,
      keys = 100,
      rollbackEvery = 10,
    } = options;
    let next = 0;
    let committed = 0;
    let slowest = 0;
    let stopped = false;
    const loop = async () => {
      let transactions = 0;
      while (next < total && !this.#stopping && !stopped) {
        const first = next;
        const n = Math.min(perTransaction, total - first);
        next += n;
        const messages = Array.from({ length: n }, (_, i) => ({
          key: `k${(first + i) % keys}`,
          ...options.message?.(first + i),
        }));
        transactions += 1;
        if (rollbackEvery > 0 && transactions % rollbackEvery === 0) {
          await this.commit(messages, { rollback: true });
        }
        const started = Date.now();
        await this.commit(messages);
        slowest = Math.max(slowest, Date.now() - started);
        committed += n;
        if (pauseMs > 0) await sleep(pauseMs);
      }
    };
    const done = Promise.all(Array.from({ length: writers }, loop)).then(() => {});
    this.#traffic.push(done);
    done.catch(() => {});
    return {
      done,
      committed: () => committed,
      slowestMs: () => slowest,
      stop: () => {
        stopped = true;
      },
    };
  }

  /**
   * Writes the outbox rows of committed messages again, each in a transaction of its own, as a
   * business that retries an operation it cannot tell had committed would: same message id,
   * same payload, no new ledger row.
   */
  async reemit(msgIds: readonly string[]): Promise<void> {
    const { rows } = await this.appPool.query<{ msg_id: string; key: string; version: number }>(
      `SELECT msg_id, key, version FROM ${this.table('ledger')} WHERE msg_id = ANY($1)`,
      [msgIds],
    );
    for (const row of rows) {
      const client = await this.appPool.connect();
      try {
        await client.query('BEGIN');
        await this.writer.add(
          client,
          this.outboxMessage(row.msg_id, { key: row.key }, row.version),
        );
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
  }

  /** The outbox writer of the scenario's schema, for business transactions written by hand. */
  get writer(): OutboxWriter {
    return this.#writer;
  }

  /** Messages with at least one effect. */
  async effected(): Promise<number> {
    const { rows } = await this.appPool.query<{ n: number }>(
      `SELECT count(DISTINCT msg_id)::int AS n FROM ${this.table('effects')}`,
    );
    return rows[0]!.n;
  }

  async waitForEffects(count: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(`${count} effects`, async () => (await this.effected()) >= count, timeoutMs, 50);
  }

  async outboxCount(): Promise<number> {
    const { rows } = await this.appPool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${this.tables.outbox}`,
    );
    return rows[0]!.n;
  }

  /** Marks the moment the fault was healed: the drain time counts from here (or from the last commit, if later). */
  healed(): void {
    this.#healedAt = Date.now();
    this.mark('healed');
  }

  /** Notes a moment of the scenario for the timing line printed at the end. */
  mark(label: string): void {
    this.#marks.push(`${label} +${((Date.now() - this.#openedAt) / 1000).toFixed(1)}s`);
  }

  /** When each phase happened, for finding where a slow scenario spends its time. */
  get timeline(): string {
    return this.#marks.join(', ');
  }

  get queues(): { main: string; deadLetter: string; all: string[] } {
    const topology = topologyOf(this.definition as ConsumerDefinition);
    return {
      main: topology.queue.name,
      deadLetter: deadLetterQueueName(topology.queue.name),
      all: topologyQueueNames(topology),
    };
  }

  #consumerStats(): ConsumerStats {
    const sum = emptyConsumerStats();
    for (const { host } of this.#hosts) {
      const stats = host.stats(this.definition.name);
      for (const k of Object.keys(sum) as Array<keyof ConsumerStats>) sum[k] += stats[k];
    }
    return sum;
  }

  #relayCounts(): { total: RelayCounts; each: RelayCounts[] } {
    const each = this.#allRelays.map((r) => r.counts());
    const total = emptyRelayCounts();
    for (const c of each) {
      for (const k of Object.keys(total) as Array<keyof RelayCounts>) total[k] += c[k];
    }
    return { total, each };
  }

  /** What has been accounted for: settled ledger rows, what waits anywhere, and the consumer's progress. */
  async #progress(): Promise<Progress> {
    const t = this.tables;
    const { rows } = await this.appPool.query<{
      committed: number;
      settled: number;
      outbox: number;
    }>(
      `SELECT
         (SELECT count(*) FROM ${this.table('ledger')})::int AS committed,
         (SELECT count(*) FROM ${this.table('ledger')} l
           WHERE EXISTS (SELECT 1 FROM ${this.table('effects')} e WHERE e.msg_id = l.msg_id)
              OR EXISTS (SELECT 1 FROM ${t.parked} p WHERE p.message_id = l.msg_id))::int AS settled,
         (SELECT count(*) FROM ${t.outbox})::int AS outbox`,
    );
    const queues = this.queues;
    let waiting = 0;
    for (const q of queues.all) {
      if (q !== queues.deadLetter) waiting += await this.admin.depth(q);
    }
    const deadLetters = await this.admin.depth(queues.deadLetter);
    const stats = this.#consumerStats();
    return { ...rows[0]!, waiting, deadLetters, received: stats.received, handled: stats.handled };
  }

  /**
   * Waits for the drain, checks hygiene, stops everything, then counts against the ledger. The
   * result is recorded whatever it says; the scenario fails when an invariant does not hold or
   * the fault left no trace.
   */
  async finish(options: FinishOptions): Promise<ScenarioResult> {
    await Promise.all(this.#traffic);
    this.mark('traffic done');
    // Drained after healing and after the last commit: the stream may outlast the fault.
    const healedAt = Math.max(this.#healedAt ?? 0, Date.now());
    const bound = this.options.drainBoundMs ?? 30_000;
    const failures: string[] = [];
    let previous = '';
    let last: Progress | undefined;
    try {
      await waitFor(
        'everything drained',
        async () => {
          const p = await this.#progress();
          last = p;
          const done =
            p.outbox === 0 && p.waiting === 0 && p.settled + p.deadLetters >= p.committed;
          // Quiet as well: nothing more arrived since the last look.
          const now = JSON.stringify(p);
          const quiet = now === previous;
          previous = now;
          return done && quiet;
        },
        bound,
        250,
      );
    } catch (error) {
      const state = await this.options.brokerState?.(this.queues.all).catch(String);
      failures.push(
        `not drained within ${bound} ms after healing: ${JSON.stringify(last)}` +
          (state === undefined ? '' : `; broker: ${state}`),
      );
      void error;
    }
    const drainMs = Date.now() - healedAt;
    this.mark('drained');

    // Hygiene while everything still runs: no transaction left open by anyone.
    const idle = await this.appPool.query<{ application_name: string; query: string }>(
      `SELECT application_name, query FROM pg_stat_activity
       WHERE application_name LIKE $1 AND state LIKE 'idle in transaction%'
         AND now() - state_change > interval '1 second'`,
      [`okf_${this.sid}_%`],
    );
    if (idle.rows.length > 0) {
      failures.push(`sessions idle in transaction: ${JSON.stringify(idle.rows)}`);
    }

    const consumer = this.#consumerStats();
    const consumerConnects = this.#hosts.reduce((n, h) => n + h.host.amqpConnects, 0);
    const reconnectsOfHosts = this.#hosts.reduce(
      (n, h) => n + Math.max(0, h.host.amqpConnects - 1),
      0,
    );
    const stopErrors = await this.#stopAll();
    failures.push(...stopErrors);
    this.mark('stopped');
    const relays = this.#relayCounts();
    const reconnects =
      reconnectsOfHosts +
      relays.each.reduce(
        (n, r) => n + Math.max(0, r.amqpConnects - 1) + Math.max(0, r.listenConnects - 1),
        0,
      );

    // The consumers gave back every connection of the application's pool: none checked out
    // by a handler that never finished, nobody waiting for one.
    const pool = this.#consumerPool;
    if (pool.waitingCount !== 0 || pool.totalCount !== pool.idleCount) {
      failures.push(
        `consumer pool not idle after stop: total ${pool.totalCount}, idle ${pool.idleCount}, waiting ${pool.waitingCount}`,
      );
    }
    if (!this.options.shareAppPool) await this.#consumerDb.destroy().catch(() => {});
    // No session of the relays or consumers may outlive them.
    await waitFor(
      'relay and consumer sessions closed',
      async () => {
        const { rows } = await this.appPool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE application_name LIKE $1 OR application_name = $2`,
          [`okf_${this.sid}_relay%`, this.applicationName('consumer')],
        );
        return rows[0]!.n === 0;
      },
      10_000,
      100,
    ).catch(() => failures.push('relay or consumer sessions left open after stop'));

    const deadLetters = new Map<string, string>();
    for (const message of await this.admin.drain(this.queues.deadLetter)) {
      const id = message.properties.messageId as string | undefined;
      const reason = String(message.properties.headers?.[OUTBOXKIT_HEADERS.reason] ?? '');
      if (id !== undefined) deadLetters.set(id, reason);
    }
    const ledger = await this.#checkLedger(deadLetters);
    if (ledger.lost > 0)
      failures.push(`${ledger.lost} messages lost: ${ledger.lostIds.slice(0, 5).join(', ')}`);
    if (ledger.doubleEffects > 0) failures.push(`${ledger.doubleEffects} double effects`);
    if (this.ordered && ledger.orderViolations > 0)
      failures.push(`${ledger.orderViolations} order violations`);
    if (ledger.phantoms > 0)
      failures.push(`${ledger.phantoms} effects of rolled-back transactions`);
    if (ledger.wrongFate.length > 0)
      failures.push(
        `messages that ended up elsewhere than expected: ${ledger.wrongFate.slice(0, 5).join(', ')}`,
      );
    for (const [id, reason] of [...deadLetters, ...ledger.parked]) {
      if (!reason) failures.push(`${id} set aside without a reason`);
    }
    const newUnhandled = unhandled.length - this.#unhandledAtStart;
    if (newUnhandled > 0) failures.push(`${newUnhandled} unhandled rejections`);

    let duplicatesDelivered = 0;
    for (const n of this.#deliveries.values()) duplicatesDelivered += Math.max(0, n - 1);
    const observed: Observed = {
      relays: relays.total,
      perRelay: relays.each,
      consumer,
      consumerConnects,
      duplicatesDelivered,
      duplicatesAbsorbed: consumer.duplicates,
      retries: relays.total.retried + consumer.retried + consumer.databaseRetries,
      reconnects,
      deadLetters,
      parked: ledger.parked,
    };
    let evidence: string;
    try {
      evidence = await options.evidence(observed);
    } catch (error) {
      evidence = 'NOT OBSERVED';
      failures.push(`the fault left no trace: ${(error as Error).message}`);
    }
    const result: ScenarioResult = {
      scenario: this.options.name,
      messages: ledger.committed,
      lost: ledger.lost,
      doubleEffects: ledger.doubleEffects,
      orderViolations: this.ordered ? ledger.orderViolations : null,
      duplicatesDelivered,
      duplicatesAbsorbed: observed.duplicatesAbsorbed,
      retries: observed.retries,
      reconnects,
      drainMs,
      evidence,
      ok: failures.length === 0,
      ...(failures.length > 0 && { failure: failures.join('; ') }),
    };
    this.result = result;
    this.mark('checked');
    recordResult(result);
    if (failures.length > 0) {
      const logs = this.#allRelays.flatMap((r) => r.recentLog().slice(-15));
      const hostLogs = this.#hosts.flatMap((h) => h.logger.lines().slice(-15));
      throw new Error(
        `${this.options.name}: ${failures.join('; ')}\nobserved: ${JSON.stringify({ ...observed, deadLetters: deadLetters.size, parked: ledger.parked.size })}\n${[...logs, ...hostLogs].join('\n')}`,
      );
    }
    return result;
  }

  async #checkLedger(deadLetters: ReadonlyMap<string, string>) {
    const t = this.tables;
    const ledger = await this.appPool.query<{ msg_id: string; fate: Fate; effects: number }>(
      `SELECT l.msg_id, l.fate, count(e.id)::int AS effects
       FROM ${this.table('ledger')} l LEFT JOIN ${this.table('effects')} e USING (msg_id)
       GROUP BY l.msg_id, l.fate`,
    );
    // Unroutable twins share their original's message id; they are the scenario's to count.
    const parkedRows = await this.appPool.query<{ message_id: string; reason: string }>(
      `SELECT message_id, reason FROM ${t.parked} WHERE routing_key <> $1`,
      [TWIN_ROUTING_KEY],
    );
    const parked = new Map(parkedRows.rows.map((r) => [r.message_id, r.reason]));
    let lost = 0;
    let doubleEffects = 0;
    const lostIds: string[] = [];
    const wrongFate: string[] = [];
    for (const row of ledger.rows) {
      doubleEffects += Math.max(0, row.effects - 1);
      const places: Fate[] = [];
      if (row.effects > 0) places.push('effect');
      if (deadLetters.has(row.msg_id)) places.push('dead-letter');
      if (parked.has(row.msg_id)) places.push('parked');
      if (places.length === 0) {
        lost += 1;
        lostIds.push(row.msg_id);
      } else if (places.length > 1 || places[0] !== row.fate) {
        wrongFate.push(`${row.msg_id} expected ${row.fate}, found ${places.join('+')}`);
      }
    }
    const phantoms = await this.appPool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${this.table('effects')} e
       WHERE NOT EXISTS (SELECT 1 FROM ${this.table('ledger')} l WHERE l.msg_id = e.msg_id)`,
    );
    // Per key, in the order effects were applied: a version below one already seen came late.
    const effects = await this.appPool.query<{ key: string; version: number }>(
      `SELECT key, version FROM ${this.table('effects')} ORDER BY id`,
    );
    const highest = new Map<string, number>();
    let orderViolations = 0;
    for (const { key, version } of effects.rows) {
      const seen = highest.get(key) ?? 0;
      if (version < seen) orderViolations += 1;
      else highest.set(key, version);
    }
    return {
      committed: ledger.rows.length,
      lost,
      lostIds,
      doubleEffects,
      orderViolations,
      phantoms: phantoms.rows[0]!.n,
      wrongFate,
      parked,
    };
  }

  /**
   * Stops consumers and relays; returns what went wrong (a relay that did not exit cleanly, a
   * stop that did not end within its bound: a stop that hangs is a finding, not a test hang).
   */
  async #stopAll(): Promise<string[]> {
    this.#stopping = true;
    const errors: string[] = [];
    const bounded = async (what: string, stop: () => Promise<void>) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          errors.push(`${what} did not stop within ${STOP_BOUND_MS} ms`);
          resolve();
        }, STOP_BOUND_MS);
      });
      await Promise.race([
        stop().catch((error: unknown) => errors.push(`${what}: ${(error as Error).message}`)),
        late,
      ]);
      clearTimeout(timer);
    };
    await Promise.all(this.#relays.splice(0).map((r) => bounded(r.name, () => r.stop())));
    await Promise.all(this.#hosts.map(({ host }) => bounded('consumer', () => host.stop())));
    return errors;
  }

  /** Stops everything and removes the scenario's schema and broker objects; idempotent. */
  async close(): Promise<void> {
    this.#stopping = true;
    await this.#stopAll().catch(() => {});
    await Promise.allSettled(this.#traffic);
    await this.admin.deleteQueues(this.queues.all);
    await this.admin.deleteExchange(this.exchange);
    await this.admin.close();
    await this.appPool.query(`DROP SCHEMA IF EXISTS "${this.schema}" CASCADE`).catch(() => {});
    if (!this.options.shareAppPool) await this.#consumerDb.destroy().catch(() => {});
    await this.appPool.end().catch(() => {});
    this.mark('closed');
    console.log(`timeline of "${this.options.name}": ${this.timeline}`);
  }
}

/** A pool whose idle and checked-out clients may fail without crashing the process. */
function guardedPool(connectionString: string, max: number, asyncCommit: boolean): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    connectionTimeoutMillis: 10_000,
    ...(asyncCommit && { options: '-c synchronous_commit=off' }),
  });
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/**
 * Runs one scenario: opens its world, runs `body` (which injects the fault, heals it and calls
 * `finish`), and closes everything however it ends. A scenario that fails before `finish` still
 * gets a row in the table.
 */
export async function runScenario(
  options: ScenarioOptions,
  body: (scenario: FaultScenario) => Promise<void>,
): Promise<void> {
  const scenario = await FaultScenario.open(options);
  try {
    await body(scenario);
    if (!scenario.result) throw new Error(`${options.name}: the scenario never called finish()`);
  } catch (error) {
    if (!scenario.result) {
      recordResult({
        scenario: options.name,
        messages: 0,
        lost: 0,
        doubleEffects: 0,
        orderViolations: null,
        duplicatesDelivered: 0,
        duplicatesAbsorbed: 0,
        retries: 0,
        reconnects: 0,
        drainMs: 0,
        evidence: 'did not finish',
        ok: false,
        failure: (error as Error).message.split('\n')[0],
      });
    }
    throw error;
  } finally {
    await scenario.close();
  }
}

/** `url` with `application_name` set, so the suite can find its sessions in pg_stat_activity. */
export function withApplicationName(url: string, applicationName: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('application_name', applicationName);
  return parsed.toString();
}
