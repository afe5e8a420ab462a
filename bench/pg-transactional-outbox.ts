/**
 * Benchmark 3, second half: the relay against the npm package pg-transactional-outbox (0.5.7),
 * both of its listeners, publishing to the same kind of queue with publisher confirms.
 *
 * Each listener run drains a pre-filled outbox of its own table and marks rows processed; the
 * handler publishes the message and waits for its confirm. The relay drains its own outbox in
 * the same run, on the same cluster, and the ratio is relay / listener per run.
 *
 * Polling listener, on the machine's cluster: "documented settings" are the package defaults
 * (batch 5, poll every 500 ms, messages stored with their defaults); the tuned settings mark
 * messages `parallel` and raise the batch size and poll rate.
 *
 * Logical replication listener: it needs `wal_level=logical`; when the machine's cluster has
 * less, the benchmark starts a private cluster (initdb into a temporary directory, the
 * machine's configured settings plus `wal_level=logical`) and deletes it at the end. The
 * package's own set-up (table, roles, publication, slot); the slot is created afresh before
 * each pre-fill, so it streams exactly those rows. "Documented settings" are its README's
 * (its default mutex: one message at a time); the tuned ones use its semaphore controller
 * with a handler pool as large (`--replication-configs SEMAPHORExPOOL,...`).
 *
 *   node dist/bench/pg-transactional-outbox.js [--quick] [--json FILE] [--runs 3]
 *     [--parts polling,replication] [--relay-messages 20000] [--timeout-seconds 90]
 *     [--messages 500] [--default-messages 150]
 *     [--replication-messages 10000] [--replication-default-messages 2000]
 *     [--replication-configs 10x10,48x48,200x80]
 */
import { loadavg } from 'node:os';
import type { ConfirmChannel } from 'amqplib';
import pg from 'pg';
import {
  DatabaseSetup,
  getDisabledLogger,
  initializePollingMessageListener,
  type StoredTransactionalMessage,
} from 'pg-transactional-outbox';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  type FreeTable,
  intFlag,
  isMain,
  listFlag,
  type Measurement,
  measurement,
  median,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  DATABASE_URL,
  newPool,
  prefillOutbox,
  serverVersions,
  serverVersionsPg,
  sleep,
} from './support/bench-services.js';
import { type LogicalCluster, openLogicalCluster } from './support/logical-cluster.js';
import {
  insertPtxMessages,
  PtxReplication,
  publishConfirmed,
  type ReplicationSettings,
} from './support/ptx-replication-harness.js';
import { RELAY_DEFAULTS, timeRelayDrainAt } from './support/relay-drain-timer.js';

interface PollingSettings {
  readonly name: string;
  readonly parallel: boolean;
  readonly batchSize?: number;
  readonly pollingIntervalMs?: number;
  /**
   * Skip its default batch-size ramp (one message per poll for the first `batchSize` polls,
   * against poison messages at start-up) with a `batchSizeStrategy` of our own.
   */
  readonly noRampUp?: boolean;
}

const SETTINGS: PollingSettings[] = [
  { name: 'documented settings (batch 5, poll 500 ms, sequential messages)', parallel: false },
  { name: 'parallel messages, batch 5, poll 500 ms', parallel: true },
  {
    name: 'parallel messages, batch 100, poll 10 ms',
    parallel: true,
    batchSize: 100,
    pollingIntervalMs: 10,
  },
  {
    name: 'parallel messages, batch 500, poll 10 ms',
    parallel: true,
    batchSize: 500,
    pollingIntervalMs: 10,
  },
  {
    name: 'parallel messages, batch 500, poll 10 ms, no batch-size ramp',
    parallel: true,
    batchSize: 500,
    pollingIntervalMs: 10,
    noRampUp: true,
  },
];

/** Settings that poll every 500 ms get few messages, or one run would take minutes. */
function slow(settings: PollingSettings): boolean {
  return settings.pollingIntervalMs === undefined;
}

async function createTable(pool: pg.Pool, schema: string): Promise<void> {
  const config = {
    outboxOrInbox: 'outbox' as const,
    database: 'test',
    schema,
    table: 'ptx_outbox',
    listenerRole: 'postgres',
    nextMessagesName: 'next_outbox_messages',
  };
  await pool.query(DatabaseSetup.dropAndCreateTable(config));
  await pool.query(DatabaseSetup.createPollingFunction(config));
  await pool.query(DatabaseSetup.setupPollingIndexes(config));
}

/** Rows as `initializeMessageStorage` writes them: one aggregate (segment) per message. */
async function prefill(
  pool: pg.Pool,
  table: string,
  count: number,
  parallel: boolean,
): Promise<void> {
  await pool.query(`TRUNCATE ${table}`);
  await insertPtxMessages(pool, table, count, parallel ? 'parallel' : 'sequential');
  await pool.query(`VACUUM ANALYZE ${table}`);
}

interface ListenerResult {
  readonly ms: number;
  readonly processed: number;
  readonly errors: number;
  readonly firstError: string | undefined;
}

async function drainWithListener(
  pool: pg.Pool,
  schema: string,
  channel: ConfirmChannel,
  queue: BenchQueue,
  count: number,
  settings: PollingSettings,
  timeoutMs: number,
): Promise<ListenerResult> {
  let errors = 0;
  let firstError: string | undefined;
  const table = `"${schema}".ptx_outbox`;
  const [shutdown] = initializePollingMessageListener(
    {
      outboxOrInbox: 'outbox',
      dbListenerConfig: { connectionString: DATABASE_URL },
      settings: {
        dbSchema: schema,
        dbTable: 'ptx_outbox',
        nextMessagesFunctionName: 'next_outbox_messages',
        nextMessagesFunctionSchema: schema,
        enableMaxAttemptsProtection: false,
        enablePoisonousMessageProtection: false,
        messageCleanupIntervalInMs: 0,
        ...(settings.batchSize !== undefined && { nextMessagesBatchSize: settings.batchSize }),
        ...(settings.pollingIntervalMs !== undefined && {
          nextMessagesPollingIntervalInMs: settings.pollingIntervalMs,
        }),
      },
    },
    {
      handle: (message: StoredTransactionalMessage) => publishConfirmed(channel, queue, message),
      handleError: async (error) => {
        errors += 1;
        firstError ??= error.message;
      },
    },
    getDisabledLogger(),
    settings.noRampUp && settings.batchSize !== undefined
      ? { batchSizeStrategy: () => Promise.resolve(settings.batchSize!) }
      : {},
  );
  const start = performance.now();
  try {
    // Under load its row locks (nextMessagesLockInMs) can expire mid-batch and rows be handled
    // again; give up after `timeoutMs` and report how far it got.
    let processed = 0;
    while (processed < count && performance.now() - start < timeoutMs) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table} WHERE processed_at IS NOT NULL`,
      );
      processed = rows[0]!.n;
      if (processed < count) await sleep(20);
    }
    return { ms: performance.now() - start, processed, errors, firstError };
  } finally {
    await shutdown();
  }
}

type Section = BenchReport['sections'][number];

interface CpuPerMessage {
  /** This process: the relay or the listener, with amqplib and pg. */
  readonly node: number;
  /** The cluster's server processes; undefined on the machine's cluster. */
  readonly postgres: number | undefined;
}

/** Starts measuring CPU; the function returned gives microseconds per message since then. */
function cpuMeter(cluster: LogicalCluster): (messages: number) => CpuPerMessage {
  const node = process.cpuUsage();
  const postgres = cluster.cpuMs();
  return (messages) => {
    const used = process.cpuUsage(node);
    const after = cluster.cpuMs();
    return {
      node: (used.user + used.system) / Math.max(1, messages),
      postgres:
        postgres === undefined || after === undefined
          ? undefined
          : ((after - postgres) * 1000) / Math.max(1, messages),
    };
  };
}

/** What both parts share: the broker connection, one confirm channel, one queue. */
interface Broker {
  readonly channel: ConfirmChannel;
  readonly queue: BenchQueue;
}

/** The polling listener, on the machine's cluster, against the relay on the same cluster. */
async function measurePolling(
  args: BenchArgs,
  pool: pg.Pool,
  { channel, queue }: Broker,
  relayMessages: number,
): Promise<{ section: Section; settings: Record<string, unknown> }> {
  const messages = intFlag(args, 'messages', 50, 500);
  const defaultMessages = intFlag(args, 'default-messages', 5, 150);
  const timeoutMs = intFlag(args, 'timeout-seconds', 5, 90) * 1000;
  const schema = await benchSchema(pool, 'bench_ptx');
  const incomplete = new Set<string>();
  const duplicates: number[] = [];
  const rates = SETTINGS.map(() => [] as number[]);
  const relay: number[] = [];
  const ratios = SETTINGS.map(() => [] as number[]);
  try {
    await createTable(pool, schema.name);
    for (let run = 1; run <= args.runs; run += 1) {
      await prefillOutbox(pool, schema.outbox, relayMessages, queue.exchange, queue.routingKey);
      await queue.reset();
      await waitForQuiet();
      const relayRate =
        (relayMessages / (await timeRelayDrain(schema.name, relayMessages, RELAY_DEFAULTS))) * 1000;
      await queue.expectDepth(relayMessages);
      relay.push(relayRate);
      progress(`polling, run ${run}: outboxkit relay ${Math.round(relayRate)} msgs/s`);
      for (const [i, settings] of SETTINGS.entries()) {
        const n = slow(settings) ? defaultMessages : messages;
        await prefill(pool, `"${schema.name}".ptx_outbox`, n, settings.parallel);
        await queue.reset();
        await waitForQuiet();
        const result = await drainWithListener(
          pool,
          schema.name,
          channel,
          queue,
          n,
          settings,
          timeoutMs,
        );
        const rate = (result.processed / result.ms) * 1000;
        await sleep(500);
        const published = await queue.depth();
        rates[i]!.push(rate);
        ratios[i]!.push(relayRate / rate);
        if (result.processed < n) incomplete.add(settings.name);
        duplicates[i] = (duplicates[i] ?? 0) + Math.max(0, published - result.processed);
        progress(
          `polling, run ${run}: ${settings.name}: ${Math.round(rate)} msgs/s (${result.processed}/${n} processed, ${published} in the queue, ${result.errors} handler errors${result.firstError ? `: ${result.firstError}` : ''})`,
        );
      }
    }
  } finally {
    await schema.drop();
  }
  const rows: Measurement[] = [
    measurement(
      `outboxkit relay, batch ${RELAY_DEFAULTS.batchSize}, ${RELAY_DEFAULTS.concurrency} lanes (${relayMessages} messages)`,
      'msgs/s',
      relay,
    ),
    ...SETTINGS.map((s, i) =>
      measurement(
        `pg-transactional-outbox polling listener, ${s.name} (${slow(s) ? defaultMessages : messages} messages${incomplete.has(s.name) ? ', not all processed within the time limit' : ''}${duplicates[i] ? `, ${duplicates[i]} published more than once` : ''})`,
        'msgs/s',
        rates[i]!,
        { ratios: ratios[i]! },
      ),
    ),
  ];
  return {
    section: {
      title:
        "polling listener, machine's cluster: classic durable queue, 1 KiB JSON payloads, publisher confirms",
      rows,
    },
    settings: { messages, defaultMessages },
  };
}

/**
 * `SEMxPOOL`: messages handled at once by its semaphore controller x handler pool size;
 * `SEMxPOOL-async`: and its handler commits with `synchronous_commit=off`.
 */
function parseReplicationConfigs(specs: readonly string[]): ReplicationSettings[] {
  return specs.map((spec) => {
    const asyncCommit = spec.endsWith('-async');
    const [semaphore, handlerPool] = spec
      .replace(/-async$/, '')
      .split('x')
      .map(Number);
    if (!semaphore || !handlerPool) {
      throw new Error(`config ${spec}: expected SEMAPHORExPOOL or SEMAPHORExPOOL-async`);
    }
    return {
      name: `semaphore ${semaphore}, handler pool ${handlerPool}${asyncCommit ? ', handler commits with synchronous_commit=off (not like for like)' : ''}`,
      semaphore,
      handlerPool,
      asyncCommit,
    };
  });
}

/**
 * The logical replication listener, on a `wal_level=logical` cluster (a private one when the
 * machine's is not), against the relay on that same cluster, in the same run.
 */
async function measureReplication(
  args: BenchArgs,
  machine: pg.Pool,
  { channel, queue }: Broker,
  relayMessages: number,
): Promise<{
  section: Section;
  table: FreeTable;
  settings: Record<string, unknown>;
  notes: string[];
}> {
  const messages = intFlag(args, 'replication-messages', 100, 10_000);
  const defaultMessages = intFlag(args, 'replication-default-messages', 50, 2000);
  const timeoutMs = intFlag(args, 'timeout-seconds', 5, 90) * 1000;
  const replicationSettings: ReplicationSettings[] = [
    { name: 'documented settings (mutex: one message at a time, handler pool 10)' },
    ...parseReplicationConfigs(listFlag(args, 'replication-configs', ['10x10', '48x48', '200x80'])),
  ];
  const countFor = (s: ReplicationSettings) =>
    s.semaphore === undefined ? defaultMessages : messages;
  const cluster = await openLogicalCluster(machine, DATABASE_URL);
  const pool = new pg.Pool({ connectionString: cluster.url, max: 4 });
  pool.on('error', () => {});
  const relay: number[] = [];
  const rates = replicationSettings.map(() => [] as number[]);
  const ratios = replicationSettings.map(() => [] as number[]);
  const flags = replicationSettings.map(() => new Set<string>());
  const loads: number[] = [];
  const relayCpu: CpuPerMessage[] = [];
  const cpus = replicationSettings.map(() => [] as CpuPerMessage[]);
  let versions: Record<string, string> = {};
  try {
    versions = await serverVersionsPg(pool);
    const schema = await benchSchema(pool, 'bench_ptx_repl');
    const ptx = await PtxReplication.create(pool, cluster.url, schema.name);
    try {
      const measureRelay = async (warmUp = false) => {
        await prefillOutbox(pool, schema.outbox, relayMessages, queue.exchange, queue.routingKey);
        await queue.reset();
        await waitForQuiet();
        if (!warmUp) loads.push(loadavg()[0]!);
        const cpu = cpuMeter(cluster);
        const ms = await timeRelayDrainAt(cluster.url, schema.name, relayMessages, RELAY_DEFAULTS);
        if (!warmUp) relayCpu.push(cpu(relayMessages));
        await queue.expectDepth(relayMessages);
        const { rows } = await pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${schema.outbox}`,
        );
        if (rows[0]!.n !== 0) throw new Error(`${rows[0]!.n} rows left in the outbox`);
        const rate = (relayMessages / ms) * 1000;
        progress(
          `replication${warmUp ? ' warm-up' : ''}: outboxkit relay ${Math.round(rate)} msgs/s`,
        );
        return rate;
      };
      // Untimed: a fresh cluster creates its WAL segments as it first fills them, and that
      // should not fall on whichever side happens to run first.
      await measureRelay(true);
      for (let run = 1; run <= args.runs; run += 1) {
        // Alternate the order, so that drift (a neighbour's load, a growing WAL) hits both sides.
        const relayFirst = run % 2 === 1;
        let relayRate = relayFirst ? await measureRelay() : 0;
        const runRates: number[] = [];
        for (const [i, settings] of replicationSettings.entries()) {
          const n = countFor(settings);
          await ptx.prefill(n);
          await queue.reset();
          await waitForQuiet();
          loads.push(loadavg()[0]!);
          const cpu = cpuMeter(cluster);
          const result = await ptx.drain(channel, queue, n, settings, timeoutMs);
          cpus[i]!.push(cpu(result.processed));
          const depth = await queue.depth();
          if (result.processed === 0) {
            throw new Error(
              `replication listener (${settings.name}) processed nothing in ${timeoutMs} ms${result.firstError ? `: ${result.firstError}` : ''}`,
            );
          }
          if (result.processed < n) flags[i]!.add('not all processed within the time limit');
          if (depth !== n) flags[i]!.add(`${depth} in the queue`);
          if (result.restarts > 0) flags[i]!.add('listener restarted');
          const rate = (result.processed / result.ms) * 1000;
          runRates.push(rate);
          rates[i]!.push(rate);
          progress(
            `replication, run ${run}: ${settings.name}: ${Math.round(rate)} msgs/s (${result.processed}/${n} processed, ${depth} in the queue, ${result.published} confirmed publishes, ${result.handlerErrors} handler errors, ${result.restarts} restarts${result.firstError ? `: ${result.firstError}` : ''})`,
          );
        }
        if (!relayFirst) relayRate = await measureRelay();
        relay.push(relayRate);
        for (const [i, rate] of runRates.entries()) ratios[i]!.push(relayRate / rate);
      }
    } finally {
      await ptx.drop();
      await schema.drop();
    }
  } finally {
    await pool.end();
    await cluster.close();
  }
  const rows: Measurement[] = [
    measurement(
      `outboxkit relay, batch ${RELAY_DEFAULTS.batchSize}, ${RELAY_DEFAULTS.concurrency} lanes (${relayMessages} messages)`,
      'msgs/s',
      relay,
    ),
    ...replicationSettings.map((s, i) =>
      measurement(
        `pg-transactional-outbox replication listener, ${s.name} (${[`${countFor(s)} messages`, ...flags[i]!].join(', ')})`,
        'msgs/s',
        rates[i]!,
        { ratios: ratios[i]! },
      ),
    ),
  ];
  const where = cluster.private
    ? 'private wal_level=logical cluster started by the benchmark'
    : "machine's cluster (wal_level=logical)";
  const cpuRow = (name: string, values: readonly CpuPerMessage[]) => [
    name,
    median(values.map((v) => v.node)),
    median(values.map((v) => v.postgres ?? Number.NaN)),
  ];
  return {
    table: {
      title:
        'logical replication part: CPU per message (µs, median of runs): the benchmark process (relay or listener, amqplib, pg) and the cluster',
      header: ['what', 'Node process', 'Postgres processes'],
      rows: [
        cpuRow(
          `outboxkit relay, batch ${RELAY_DEFAULTS.batchSize}, ${RELAY_DEFAULTS.concurrency} lanes`,
          relayCpu,
        ),
        ...replicationSettings.map((s, i) => cpuRow(`replication listener, ${s.name}`, cpus[i]!)),
      ],
    },
    section: {
      title: `logical replication listener, ${where}: classic durable queue, 1 KiB JSON payloads, publisher confirms`,
      rows,
    },
    settings: {
      replicationMessages: messages,
      replicationDefaultMessages: defaultMessages,
      replicationCluster: cluster.private ? 'private' : 'machine',
      replicationClusterSettings: cluster.settings,
      replicationPostgres: versions['postgres'],
    },
    notes: [
      `replication part: load average (1 min) before each timed run: ${Math.min(...loads).toFixed(1)}-${Math.max(...loads).toFixed(1)}`,
    ],
  };
}

export async function pgTransactionalOutbox(args: BenchArgs): Promise<BenchReport> {
  const parts = listFlag(args, 'parts', ['polling', 'replication']);
  const relayMessages = intFlag(args, 'relay-messages', 500, 20_000);
  const pool = newPool(4);
  const connection = await amqpConnect();
  const sections: Section[] = [];
  const tables: FreeTable[] = [];
  const notes: string[] = [];
  let settings: Record<string, unknown> = { relayMessages, queue: 'classic durable' };
  try {
    settings = { ...settings, ...(await serverVersions(pool, connection)) };
    const queue = await BenchQueue.open(connection, 'classic');
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => {});
    try {
      if (parts.includes('polling')) {
        const part = await measurePolling(args, pool, { channel, queue }, relayMessages);
        sections.push(part.section);
        settings = { ...settings, ...part.settings };
      }
      if (parts.includes('replication')) {
        const part = await measureReplication(args, pool, { channel, queue }, relayMessages);
        sections.push(part.section);
        tables.push(part.table);
        settings = { ...settings, ...part.settings };
        notes.push(...part.notes);
      }
    } finally {
      await channel.close().catch(() => {});
      await queue.close();
    }
  } finally {
    await connection.close().catch(() => {});
    await pool.end();
  }
  return {
    benchmark: 'pg-transactional-outbox',
    title:
      'Relay against pg-transactional-outbox 0.5.7 (polling and logical replication listeners)',
    settings,
    sections,
    tables,
    notes: [
      'ratio here: outboxkit relay rate / that listener rate, same run, same cluster (higher is better for outboxkit); targets: at least 15 against the polling listener, at least 6 against the replication listener',
      'one aggregate (segment) per message; the listeners mark rows processed and keep them',
      ...notes,
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(pgTransactionalOutbox);
