// `npm run soak -- --seconds S --seed X`: a seeded chaos soak. Steady business traffic through
// the outbox, two relays (the CLI) and two consumers (an ordered and a plain one, each a child
// process), against a private RabbitMQ node and a private Postgres cluster, while a schedule
// drawn from the seed injects one fault every few seconds. At the end: the drain, the ledger,
// and the resource trends of every process generation. Exits 1 on any failure, naming the seed
// and the fault that preceded it.
import { randomInt } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { topologyOf } from '../../src/consumer/consumer-topology.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor, within } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { type BusinessMessage, FaultScenario } from './fault-scenario.js';
import { PrivatePostgres } from './private-postgres.js';
import { PrivateRabbitMq } from './private-rabbitmq.js';
import { RelayProcess } from './relay-handles.js';
import { soakConsumerDefinition } from './soak-consumer-definition.js';
import { ConsumerProcess, type Generation, type Member, Members } from './soak-members.js';
import { plotSoak } from './soak-plot.js';
import {
  type BrokerClients,
  openFds,
  parseConnections,
  rssKb,
  type Sample,
  TOLERANCES,
  trendsOf,
} from './soak-samples.js';
import {
  checkScheduleIsReproducible,
  describeFault,
  drawSchedule,
  FAULT_KINDS,
  mulberry32,
  type ScheduledFault,
} from './soak-schedule.js';

// ---------------------------------------------------------------------------- arguments

const USAGE = `Usage: npm run soak -- [--seconds S] [--seed X] [options]

  --seconds <n>       length of the faulty traffic (default 60)
  --seed <n>          seed of the fault schedule, 0 to 4294967295 (default: a fresh one, printed)
  --rate <n>          messages committed per second (default 30)
  --sample-every <n>  seconds between resource samples (default 5)
  --drain-bound <n>   seconds the drain may take after the last fault (default 60)
  --queue-type <t>    classic or quorum: the consumers' queues (default classic; see
                      docs/reliability.md for what RabbitMQ 3.10 does to a single-node
                      quorum queue killed with kill -9)
  --out <dir>         where samples.json, report.json and trends.svg go
                      (default: $TMPDIR/outboxkit-soak-<seed>)
`;

const { values: flags } = parseArgs({
  options: {
    seconds: { type: 'string' },
    seed: { type: 'string' },
    rate: { type: 'string' },
    'sample-every': { type: 'string' },
    'drain-bound': { type: 'string' },
    'queue-type': { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (flags.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}

function numberFlag(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > max) {
    process.stderr.write(
      `--${name} must be a whole number from 0 to ${max}, got ${value}\n${USAGE}`,
    );
    process.exit(2);
  }
  return n;
}

const SECONDS = Math.max(1, numberFlag('seconds', flags.seconds, 60, 7 * 24 * 3600));
const SEED = numberFlag('seed', flags.seed, randomInt(2 ** 32), 2 ** 32 - 1);
const RATE = Math.max(1, numberFlag('rate', flags.rate, 30, 10_000));
const SAMPLE_MS = Math.max(1, numberFlag('sample-every', flags['sample-every'], 5, 3600)) * 1000;
const DRAIN_BOUND_MS =
  Math.max(1, numberFlag('drain-bound', flags['drain-bound'], 60, 3600)) * 1000;
const QUEUE_TYPE = flags['queue-type'] ?? 'classic';
if (QUEUE_TYPE !== 'classic' && QUEUE_TYPE !== 'quorum') {
  process.stderr.write(`--queue-type must be classic or quorum, got ${QUEUE_TYPE}\n${USAGE}`);
  process.exit(2);
}
const OUT = flags.out ?? path.join(os.tmpdir(), `outboxkit-soak-${SEED}`);

/** Business writers side by side, and the keys their messages spread over. */
const WRITERS = 2;
const KEYS = 40;
/** Share of messages with an ordering key; the rest carry none. */
const KEYED_SHARE = 0.7;
const ROLLBACK_SHARE = 0.1;
/** A fault step that outlives this is a hang, and a finding. */
const FAULT_BOUND_MS = 120_000;
/**
 * Broker connections and channels are counted every this many samples: each count boots
 * `rabbitmqctl` (an Erlang VM, about a second of CPU), which a two-core machine feels.
 */
const BROKER_SAMPLE_EVERY = 3;
/** Longest a broker listing or a queue depth may take to answer a sample. */
const SAMPLE_CALL_MS = 20_000;

// ---------------------------------------------------------------------------- findings

interface FaultRecord {
  readonly fault: ScheduledFault;
  /** Seconds since the traffic started, when it was injected and when it was healed. */
  readonly t: number;
  healedT?: number;
  note?: string;
  error?: string;
}

interface Failure {
  readonly message: string;
  /** Seconds since the traffic started. */
  readonly t: number;
}

const faultsDone: FaultRecord[] = [];
/** Faults whose injection or healing failed in the tools (rabbitmqctl, pg_ctl), not in outboxkit. */
const harnessErrors: Array<{ t: number; fault: string; error: string }> = [];
/** Faults on the soak's own processes: a step of theirs that fails is a finding. */
const PROCESS_FAULTS: ReadonlySet<ScheduledFault['kind']> = new Set([
  'relay-sigkill',
  'relay-sigterm',
  'consumer-sigkill',
]);
const failures: Failure[] = [];
let t0 = Date.now();
const elapsed = (at = Date.now()) => (at - t0) / 1000;

/** The last fault injected at or before `t`: the suspect of a failure seen then. */
function faultBefore(t: number): FaultRecord | undefined {
  return faultsDone.filter((f) => f.t <= t).at(-1);
}

function describeRecord(record: FaultRecord | undefined): string {
  if (!record) return 'no fault before it';
  return `fault ${describeFault(record.fault)} (injected at ${record.t.toFixed(1)} s${record.note ? `; ${record.note}` : ''})`;
}

function fail(message: string, t = elapsed()): void {
  failures.push({ message, t });
  console.error(
    `[${t.toFixed(1).padStart(7)} s] FAILURE (seed ${SEED}): ${message}\n    preceded by ${describeRecord(faultBefore(t))}`,
  );
}

function log(message: string): void {
  console.log(`[${elapsed().toFixed(1).padStart(7)} s] ${message}`);
}

process.on('unhandledRejection', (reason) => {
  fail(`unhandled rejection in the soak: ${(reason as Error)?.stack ?? String(reason)}`);
});

// ---------------------------------------------------------------------------- the schedule

checkScheduleIsReproducible(SEED, SECONDS);
const schedule = drawSchedule(SEED, SECONDS);
console.log(
  `outboxkit soak: seed ${SEED}, ${SECONDS} s, ${RATE} msgs/s, ${schedule.length} faults ` +
    `(the schedule draws the same for the same seed and length: checked)\n` +
    `reproduce: npm run soak -- --seconds ${SECONDS} --seed ${SEED}\n` +
    `schedule (as far as time allows; faults take time, so a run injects fewer):\n` +
    `${schedule
      .slice(0, 40)
      .map((f) => `  ${describeFault(f)}`)
      .join(
        '\n',
      )}${schedule.length > 40 ? `\n  ... the rest in ${path.join(OUT, 'schedule.txt')}` : ''}`,
);
mkdirSync(OUT, { recursive: true });
writeFileSync(
  path.join(OUT, 'schedule.txt'),
  `seed ${SEED}, ${SECONDS} s\n${schedule.map(describeFault).join('\n')}\n`,
);

// ---------------------------------------------------------------------------- the world

/** The private broker and cluster, the proxy, and the ledger's schema. */
async function setUp() {
  await reapLeftovers();
  const [node, cluster] = await Promise.all([PrivateRabbitMq.start(), PrivatePostgres.start()]);
  // Relays and consumers reach the broker through the proxy, so a pause hangs their links; the
  // soak's own look at the broker (queue depths) goes direct.
  const proxy = await TcpProxy.start('127.0.0.1', node.port);
  const sc = await FaultScenario.open({
    name: `soak seed ${SEED}`,
    databaseUrl: (applicationName) => cluster.url(applicationName),
    amqpUrl: node.url,
    ordered: true,
    // Postgres is crashed (`-m immediate`): a commit must mean the WAL is flushed.
    asyncCommit: false,
  });
  // When each ledger row and effect was written, to name the fault that preceded an anomaly.
  await sc.appPool.query(`
    ALTER TABLE ${sc.table('ledger')} ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp();
    ALTER TABLE ${sc.table('effects')} ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp();
    CREATE INDEX ON ${sc.table('effects')} (consumer, msg_id);`);
  return { node, cluster, proxy, sc };
}

const bootStarted = Date.now();
const { node, cluster, proxy, sc } = await setUp().catch((error: unknown) => {
  // The exit hooks of fault-processes stop whatever private service did start.
  console.error(
    `soak FAILED, seed ${SEED}: the private services did not come up: ${(error as Error).stack ?? error}`,
  );
  process.exit(1);
});
const amqpViaProxy = proxy.url(node.url);

const CONSUMERS = {
  ordered: soakConsumerDefinition(
    `okf.${sc.sid}.ordered`,
    sc.exchange,
    true,
    sc.schema,
    QUEUE_TYPE,
  ),
  plain: soakConsumerDefinition(`okf.${sc.sid}.plain`, sc.exchange, false, sc.schema, QUEUE_TYPE),
} as const;
type ConsumerSlot = keyof typeof CONSUMERS;
const topologies = Object.values(CONSUMERS).map((d) => topologyOf(d as ConsumerDefinition));
/** Queues where messages wait to be handled: the main, retry-due and delay queues. */
const waitingQueues = topologies.flatMap((t) => [
  t.queue.name,
  ...(t.retryDueQueue ? [t.retryDueQueue.name] : []),
  ...t.delayQueues.map((q) => q.name),
]);
const deadLetterQueues = topologies.map((t) => t.deadLetterQueue.name);
/** Quorum queues: those a `kill -9` may bring back without a leader. */
const quorumQueues = QUEUE_TYPE === 'quorum' ? waitingQueues : [];

const applicationNameOf = (slot: string, gen: number) => `okf_${sc.sid}_${slot}_g${gen}`;

const members = new Members(
  async (slot, gen): Promise<Member> => {
    const applicationName = applicationNameOf(slot, gen);
    const label = `${slot}#${gen}`;
    const startedAt = Date.now();
    if (slot.startsWith('relay')) {
      const relay = await RelayProcess.spawn(label, {
        applicationName,
        databaseUrl: cluster.url(applicationName),
        amqpUrl: amqpViaProxy,
        schema: sc.schema,
        // The base flags of RelayProcess (heartbeat 1 s, publish timeout 2 s, stats every
        // 100 ms) stay; a flag given twice is refused.
        args: [
          '--batch-size',
          '100',
          '--concurrency',
          '4',
          '--retry-initial',
          '100ms',
          '--retry-max',
          '2s',
        ],
      });
      return {
        kind: 'relay',
        process: relay,
        generation: { slot, gen, label, pid: relay.pid, applicationName, startedAt },
      };
    }
    const definition = CONSUMERS[slot as ConsumerSlot];
    const consumer = await ConsumerProcess.spawn({
      DATABASE_URL: cluster.url(applicationName),
      AMQP_URL: amqpViaProxy,
      OKT_SCHEMA: sc.schema,
      OKT_CONSUMER: definition.name,
      OKT_EXCHANGE: sc.exchange,
      OKT_ORDERED: definition.ordered ? '1' : '0',
      OKT_QUEUE_TYPE: QUEUE_TYPE,
    });
    return {
      kind: 'consumer',
      process: consumer,
      generation: { slot, gen, label, pid: consumer.pid, applicationName, startedAt },
    };
  },
  (generation, how) => fail(`${generation.label} (pid ${generation.pid}) ended: ${how}`),
);

/**
 * Heals whatever a fault may have left broken (a fault whose tools failed, the end of the run),
 * trying three times: rabbitmqctl itself times out on an overloaded machine.
 */
async function healAll(): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      proxy.heal();
      if (node.pid === undefined) await node.boot();
      await node.ctl('start_app');
      await node.ctl('set_vm_memory_high_watermark', '0.4');
      const answers = await sc.appPool.query('SELECT 1').then(
        () => true,
        () => false,
      );
      if (!answers) await cluster.boot();
      await node.electMissingLeaders(quorumQueues, 10_000);
      return;
    } catch (error) {
      if (attempt === 3) throw error;
      log(`healing failed (attempt ${attempt}), again: ${(error as Error).message.split('\n')[0]}`);
    }
  }
}

const samples: Sample[] = [];
let committed = 0;
let rolledBack = 0;
let trafficStopped = false;

try {
  // Consumers first: they declare the exchange and the queues.
  await Promise.all([members.start('ordered'), members.start('plain')]);
  await Promise.all([members.start('relay0'), members.start('relay1')]);
  log(
    `world up in ${((Date.now() - bootStarted) / 1000).toFixed(1)} s: broker ${node.nodeName}, Postgres :${cluster.port}, schema ${sc.schema}`,
  );
  t0 = Date.now();

  // -------------------------------------------------------------------------- traffic

  const pick = mulberry32(SEED ^ 0x9e3779b9);
  const writer = async () => {
    const perWriter = RATE / WRITERS;
    let due = Date.now();
    while (!trafficStopped) {
      const n = 1 + Math.floor(pick() * 4);
      const messages: BusinessMessage[] = Array.from({ length: n }, () => {
        const k = Math.floor(pick() * KEYS);
        return pick() < KEYED_SHARE ? { key: `k${k}` } : { key: `u${k}`, unkeyed: true };
      });
      const rollback = pick() < ROLLBACK_SHARE;
      try {
        await sc.commit(messages, { rollback });
        if (rollback) rolledBack += n;
        else committed += n;
      } catch (error) {
        fail(`a business transaction failed for good: ${(error as Error).message}`);
      }
      // Paced to the rate; after an outage, no burst to catch up beyond a second's worth.
      due = Math.max(due + (n / perWriter) * 1000, Date.now() - 1000);
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
    }
  };
  const writers = Array.from({ length: WRITERS }, writer);

  // -------------------------------------------------------------------------- sampling

  const sampleOnce = async (): Promise<Sample> => {
    const t = elapsed();
    const current = members.current();
    const askBroker = samples.length % BROKER_SAMPLE_EVERY === 0;
    const [clients, backends, outbox, queueDepths] = await Promise.all([
      askBroker
        ? node
            .ctl('list_connections', 'client_properties', 'channels', '--formatter', 'json', '-q')
            .then(parseConnections)
            .catch((): BrokerClients | null => null)
        : null,
      sc.appPool
        .query<{ application_name: string; n: number }>(
          `SELECT application_name, count(*)::int AS n FROM pg_stat_activity
           WHERE application_name LIKE $1 GROUP BY 1`,
          [`okf_${sc.sid}_%`],
        )
        .then((r) => new Map(r.rows.map((row) => [row.application_name, row.n])))
        .catch(() => null),
      sc.appPool
        .query<{ outbox: number; parked: number }>(
          `SELECT (SELECT count(*) FROM ${sc.tables.outbox})::int AS outbox,
                  (SELECT count(*) FROM ${sc.tables.parked})::int AS parked`,
        )
        .then((r) => r.rows[0]!)
        .catch(() => null),
      Promise.all(
        [...waitingQueues, ...deadLetterQueues].map(async (q) => [
          q,
          await within(`depth of ${q}`, sc.admin.depth(q), SAMPLE_CALL_MS).catch(() => null),
        ]),
      ),
    ]);
    return {
      t,
      processes: current.map(({ generation: g }) => ({
        label: g.label,
        pid: g.pid,
        age: (Date.now() - g.startedAt) / 1000,
        rssKb: rssKb(g.pid),
        fds: openFds(g.pid),
        backends: backends ? (backends.get(g.applicationName) ?? 0) : null,
        connections: clients ? (clients.byPid.get(g.pid)?.connections ?? 0) : null,
        channels: clients ? (clients.byPid.get(g.pid)?.channels ?? 0) : null,
      })),
      backends: backends ? [...backends.values()].reduce((a, b) => a + b, 0) : null,
      connections: clients?.connections ?? null,
      channels: clients?.channels ?? null,
      outbox: outbox?.outbox ?? null,
      parked: outbox?.parked ?? null,
      queues: Object.fromEntries(queueDepths),
      committed,
    };
  };
  const writeSamples = () =>
    writeFileSync(
      path.join(OUT, 'samples.json'),
      JSON.stringify(
        {
          seed: SEED,
          seconds: SECONDS,
          queueType: QUEUE_TYPE,
          faults: faultsDone,
          generations: members.generations,
          samples,
        },
        null,
        1,
      ),
    );
  let sampling = true;
  const sampler = (async () => {
    let next = Date.now();
    while (sampling) {
      samples.push(await sampleOnce());
      writeSamples();
      next += SAMPLE_MS;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
  })();

  // -------------------------------------------------------------------------- faults

  const relaySlot = (target: number) => `relay${target}`;
  const consumerSlot = (target: number): ConsumerSlot => (target === 0 ? 'ordered' : 'plain');
  const generationNote = (g: Generation | undefined) =>
    g ? `${g.label} (pid ${g.pid})` : 'none running';

  async function inject(fault: ScheduledFault): Promise<string> {
    switch (fault.kind) {
      case 'relay-sigkill':
        return `SIGKILL ${generationNote(await members.kill(relaySlot(fault.target)))}`;
      case 'relay-sigterm':
        return `SIGTERM ${generationNote(await members.terminate(relaySlot(fault.target)))}`;
      case 'consumer-sigkill':
        return `SIGKILL ${generationNote(await members.kill(consumerSlot(fault.target)))}`;
      case 'close-all-connections':
        await node.ctl('close_all_connections', 'outboxkit soak: close_all_connections');
        return 'every connection closed by the broker';
      case 'broker-kill-9': {
        await node.kill();
        await node.boot();
        // RabbitMQ 3.10 may bring a quorum queue back without a leader, for good
        // (rabbitmq-server#10070): a broker defect, mended by hand after 10 s and noted.
        const elected = await node.electMissingLeaders(quorumQueues, 10_000);
        return elected.length > 0 ? `leaders elected by hand: ${elected.join(', ')}` : 'booted';
      }
      case 'broker-stop-start-app':
        await node.ctl('stop_app');
        try {
          await sleep(fault.holdMs);
        } finally {
          await node.ctl('start_app');
        }
        return 'stop_app, start_app';
      case 'postgres-restart-fast':
        await cluster.restart('fast');
        return 'restarted';
      case 'postgres-restart-immediate':
        await cluster.restart('immediate');
        return 'crashed and recovered';
      case 'terminate-backends': {
        const { rows } = await sc.appPool.query<{ n: number }>(
          `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
           WHERE application_name LIKE $1 AND pid <> pg_backend_pid()`,
          [`okf_${sc.sid}_%`],
        );
        return `${rows[0]!.n} sessions terminated`;
      }
      case 'memory-alarm':
        await node.ctl('set_vm_memory_high_watermark', '0');
        try {
          await sleep(fault.holdMs);
        } finally {
          await node.ctl('set_vm_memory_high_watermark', '0.4');
        }
        return 'publishers blocked, then released';
      case 'proxy-pause':
        proxy.pause();
        try {
          await sleep(fault.holdMs);
        } finally {
          proxy.resume();
        }
        return 'every AMQP link hung, then resumed';
    }
  }

  const endAt = t0 + SECONDS * 1000;
  for (const fault of schedule) {
    await sleep(Math.min(fault.gapMs, endAt - Date.now()));
    if (Date.now() >= endAt) break;
    const record: FaultRecord = { fault, t: elapsed() };
    faultsDone.push(record);
    const started = Date.now();
    try {
      record.note = await within(describeFault(fault), inject(fault), FAULT_BOUND_MS);
    } catch (error) {
      const message = (error as Error).message;
      record.error = message.split('\n')[0];
      if (PROCESS_FAULTS.has(fault.kind)) {
        // A relay that does not exit 0 on SIGTERM, or a process that does not start again:
        // outboxkit's doing.
        fail(`fault ${describeFault(fault)}: ${message}`);
      } else {
        // rabbitmqctl or pg_ctl failing or timing out (an overloaded machine): the tools', not
        // outboxkit's. Counted and healed; what it did to the traffic the ledger still tells.
        harnessErrors.push({ t: record.t, fault: describeFault(fault), error: record.error ?? '' });
        log(`the fault's own tools failed (not counted against outboxkit): ${record.error}`);
      }
      await healAll().catch((e: unknown) => fail(`healing failed: ${(e as Error).message}`));
    }
    record.healedT = elapsed();
    log(
      `fault ${describeFault(fault)}: ${record.note ?? record.error} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  }
  const lastWait = endAt - Date.now();
  if (lastWait > 0) await sleep(lastWait);

  // -------------------------------------------------------------------------- the drain

  trafficStopped = true;
  await Promise.all(writers);
  await healAll();
  const healedAt = Date.now();
  log(`faults stopped, traffic stopped (${committed} messages committed); draining`);

  interface Progress {
    ledger: number;
    ordered: number;
    plain: number;
    outbox: number;
    parked: number;
    waiting: number;
  }
  const progress = async (): Promise<Progress> => {
    const { rows } = await sc.appPool.query<Omit<Progress, 'waiting'>>(
      `SELECT (SELECT count(*) FROM ${sc.table('ledger')})::int AS ledger,
              (SELECT count(DISTINCT msg_id) FROM ${sc.table('effects')} WHERE consumer = $1)::int AS ordered,
              (SELECT count(DISTINCT msg_id) FROM ${sc.table('effects')} WHERE consumer = $2)::int AS plain,
              (SELECT count(*) FROM ${sc.tables.outbox})::int AS outbox,
              (SELECT count(*) FROM ${sc.tables.parked})::int AS parked`,
      [CONSUMERS.ordered.name, CONSUMERS.plain.name],
    );
    let waiting = 0;
    for (const q of waitingQueues) waiting += await sc.admin.depth(q);
    return { ...rows[0]!, waiting };
  };
  let last: Progress | undefined;
  let previous = '';
  const drained = await waitFor(
    'the drain',
    async () => {
      const p = await progress();
      last = p;
      const now = JSON.stringify(p);
      const quiet = now === previous;
      previous = now;
      const done =
        p.outbox === 0 &&
        p.waiting === 0 &&
        p.ordered >= p.ledger - p.parked &&
        p.plain >= p.ledger - p.parked;
      return done && quiet;
    },
    DRAIN_BOUND_MS,
    250,
  ).then(
    () => true,
    () => false,
  );
  const drainMs = Date.now() - healedAt;
  if (!drained)
    fail(
      `not drained within ${DRAIN_BOUND_MS / 1000} s of the last fault: ${JSON.stringify(last)}`,
    );
  else log(`drained in ${(drainMs / 1000).toFixed(1)} s`);

  sampling = false;
  await sampler;
  writeSamples();

  // Hygiene while everything still runs: no transaction left open.
  const idle = await sc.appPool.query<{ application_name: string; query: string }>(
    `SELECT application_name, query FROM pg_stat_activity
     WHERE application_name LIKE $1 AND state LIKE 'idle in transaction%'
       AND now() - state_change > interval '1 second'`,
    [`okf_${sc.sid}_%`],
  );
  if (idle.rows.length > 0) fail(`sessions idle in transaction: ${JSON.stringify(idle.rows)}`);

  const totals = {
    relays: members.relayTotals(),
    ordered: members.consumerTotals('ordered'),
    plain: members.consumerTotals('plain'),
  };
  for (const error of await members.stopAll())
    fail(`a stop at the end of the run failed: ${error}`);

  // -------------------------------------------------------------------------- the ledger

  const deadLetters: Record<string, number> = {};
  for (const q of deadLetterQueues) {
    deadLetters[q] = await sc.admin.depth(q);
    if (deadLetters[q] > 0) {
      const messages = await sc.admin.drain(q);
      const ids = messages.slice(0, 5).map((m) => m.properties.messageId as string);
      fail(`${deadLetters[q]} dead letters in ${q}: ${ids.join(', ')}`);
    }
  }
  const parked = await sc.appPool.query<{ message_id: string; reason: string }>(
    `SELECT message_id, reason FROM ${sc.tables.parked} LIMIT 5`,
  );
  const parkedCount = (
    await sc.appPool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sc.tables.parked}`)
  ).rows[0]!.n;
  if (parkedCount > 0) fail(`${parkedCount} outbox rows parked: ${JSON.stringify(parked.rows)}`);
  const outboxLeft = await sc.outboxCount();
  if (outboxLeft > 0) fail(`${outboxLeft} rows left in the outbox`);

  const ledgerCount = (
    await sc.appPool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${sc.table('ledger')}`)
  ).rows[0]!.n;
  if (ledgerCount !== committed) {
    fail(`the ledger holds ${ledgerCount} messages, the writers counted ${committed} commits`);
  }
  const perConsumer: Record<
    string,
    { effects: number; lost: number; doubled: number; orderViolations: number | null }
  > = {};
  for (const [slot, definition] of Object.entries(CONSUMERS)) {
    // Ledger rows with no effect or more than one: when each was committed, and when its
    // second effect was written.
    const anomalies = await sc.appPool.query<{
      msg_id: string;
      n: number;
      at_ms: number;
      second_ms: number | null;
    }>(
      `WITH e AS (
         SELECT msg_id, count(*)::int AS n, (array_agg(at ORDER BY id))[2] AS second
         FROM ${sc.table('effects')} WHERE consumer = $1 GROUP BY msg_id)
       SELECT l.msg_id, coalesce(e.n, 0) AS n,
              extract(epoch FROM l.at) * 1000 AS at_ms, extract(epoch FROM e.second) * 1000 AS second_ms
       FROM ${sc.table('ledger')} l LEFT JOIN e USING (msg_id)
       WHERE coalesce(e.n, 0) <> 1
       ORDER BY l.at`,
      [definition.name],
    );
    const effects = (
      await sc.appPool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${sc.table('effects')} WHERE consumer = $1`,
        [definition.name],
      )
    ).rows[0]!.n;
    const lost = anomalies.rows.filter((r) => r.n === 0);
    const doubled = anomalies.rows.filter((r) => r.n > 1);
    for (const r of lost.slice(0, 5)) {
      fail(
        `${slot} consumer: ${r.msg_id} lost (committed at ${elapsed(Number(r.at_ms)).toFixed(1)} s)`,
        elapsed(Number(r.at_ms)),
      );
    }
    if (lost.length > 5) fail(`${slot} consumer: ${lost.length} messages lost in all`);
    for (const r of doubled.slice(0, 5)) {
      const at = elapsed(Number(r.second_ms));
      fail(
        `${slot} consumer: ${r.msg_id} applied ${r.n} times (second effect at ${at.toFixed(1)} s)`,
        at,
      );
    }
    if (doubled.length > 5)
      fail(`${slot} consumer: ${doubled.length} messages applied more than once in all`);
    let orderViolations: number | null = null;
    if (definition.ordered) {
      // Per key, in the order effects were applied: a version below one already seen came late.
      const { rows } = await sc.appPool.query<{
        key: string;
        version: number;
        msg_id: string;
        at_ms: number;
      }>(
        `SELECT key, version, msg_id, extract(epoch FROM at) * 1000 AS at_ms FROM ${sc.table('effects')}
         WHERE consumer = $1 AND key LIKE 'k%' ORDER BY id`,
        [definition.name],
      );
      const highest = new Map<string, number>();
      orderViolations = 0;
      for (const r of rows) {
        const seen = highest.get(r.key) ?? 0;
        if (r.version < seen) {
          orderViolations += 1;
          if (orderViolations <= 5) {
            const at = elapsed(Number(r.at_ms));
            fail(
              `ordered consumer: ${r.msg_id} (${r.key} v${r.version}) applied after v${seen} (at ${at.toFixed(1)} s)`,
              at,
            );
          }
        } else highest.set(r.key, r.version);
      }
      if (orderViolations > 5) fail(`ordered consumer: ${orderViolations} order violations in all`);
    }
    perConsumer[slot] = { effects, lost: lost.length, doubled: doubled.length, orderViolations };
  }
  const phantoms = (
    await sc.appPool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${sc.table('effects')} e
       WHERE NOT EXISTS (SELECT 1 FROM ${sc.table('ledger')} l WHERE l.msg_id = e.msg_id)`,
    )
  ).rows[0]!.n;
  if (phantoms > 0) fail(`${phantoms} effects of rolled-back transactions`);

  // -------------------------------------------------------------------------- trends

  const trends = trendsOf(samples);
  for (const trend of trends.filter((tr) => !tr.ok)) {
    fail(
      `${trend.who}: ${trend.metric} grew from ${trend.first} (highest of the first third) to ${trend.last} (median of the last third) of its ${trend.samples} samples past its first minute (limit ${trend.limit.toFixed(0)})`,
    );
  }

  // -------------------------------------------------------------------------- the report

  const byKind = Object.fromEntries(
    FAULT_KINDS.map((kind) => [kind, faultsDone.filter((f) => f.fault.kind === kind).length]),
  );
  const report = {
    seed: SEED,
    seconds: SECONDS,
    queueType: QUEUE_TYPE,
    rate: RATE,
    ok: failures.length === 0,
    faults: faultsDone.length,
    faultsByKind: byKind,
    harnessErrors,
    messages: committed,
    rolledBack,
    consumers: perConsumer,
    phantoms,
    parked: parkedCount,
    deadLetters,
    outboxLeft,
    drainMs,
    duplicatesAbsorbed: { ordered: totals.ordered.duplicates, plain: totals.plain.duplicates },
    redelivered: { ordered: totals.ordered.redelivered, plain: totals.plain.redelivered },
    relays: totals.relays,
    consumerGenerations: members.generations.filter((g) => !g.slot.startsWith('relay')).length,
    relayGenerations: members.generations.filter((g) => g.slot.startsWith('relay')).length,
    generations: members.generations,
    tolerances: TOLERANCES,
    trends,
    failures,
    samples: samples.length,
  };
  writeFileSync(path.join(OUT, 'report.json'), JSON.stringify(report, null, 2));
  writeFileSync(
    path.join(OUT, 'trends.svg'),
    plotSoak(
      samples,
      faultsDone.map((f) => ({ t: f.t, kind: f.fault.kind })),
      `outboxkit soak: seed ${SEED}, ${SECONDS} s, ${faultsDone.length} faults, ${committed} messages`,
    ),
  );
  /** Per metric: how many trends were checked, and the one closest to its limit. */
  const worst = (metric: string) => {
    const mine = trends.filter((tr) => tr.metric === metric);
    if (mine.length === 0) return `${metric}: none long enough`;
    const w = mine.reduce((a, b) => (b.last / b.limit > a.last / a.limit ? b : a));
    return `${metric}: ${mine.length} checked, closest to its limit ${w.who} ${w.first} -> ${w.last} (limit ${w.limit.toFixed(0)})`;
  };
  console.log(
    [
      '',
      `soak seed ${SEED}: ${failures.length === 0 ? 'PASSED' : `FAILED (${failures.length} failures)`}`,
      `  faults: ${faultsDone.length} (${Object.entries(byKind)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')})`,
      `  messages: ${committed} committed, ${rolledBack} rolled back`,
      ...harnessErrors.map(
        (h) => `  the tools failed at ${h.t.toFixed(1)} s in ${h.fault}: ${h.error}`,
      ),
      ...Object.entries(perConsumer).map(
        ([slot, c]) =>
          `  ${slot} consumer: ${c.effects} effects, ${c.lost} lost, ${c.doubled} applied twice, order violations ${c.orderViolations ?? 'n/a'}`,
      ),
      `  phantoms ${phantoms}, parked ${parkedCount}, dead letters ${Object.values(deadLetters).reduce((a, b) => a + b, 0)}, outbox left ${outboxLeft}, drain ${(drainMs / 1000).toFixed(1)} s`,
      `  duplicates absorbed: ordered ${totals.ordered.duplicates}, plain ${totals.plain.duplicates}; relays: ${JSON.stringify(totals.relays)}`,
      `  generations: ${members.generations.map((g) => g.label).join(' ')}`,
      "  trends (highest of the first third -> median of the last third, past each process's first minute):",
      ...['rssKb', 'fds', 'backends', 'connections', 'channels'].map((m) => `    ${worst(m)}`),
      `  written: ${path.join(OUT, 'samples.json')}, report.json, trends.svg`,
    ].join('\n'),
  );
} catch (error) {
  fail(`the soak itself failed: ${(error as Error).stack ?? error}`);
} finally {
  trafficStopped = true;
  await members.killAll();
  await within('cleanup', sc.close(), 60_000).catch(() => {});
  await proxy.close().catch(() => {});
  await node.destroy().catch(() => {});
  await cluster.destroy().catch(() => {});
}

if (failures.length > 0) {
  console.error(
    `\nsoak FAILED, seed ${SEED} (reproduce: npm run soak -- --seconds ${SECONDS} --seed ${SEED}):`,
  );
  for (const f of failures) {
    console.error(
      `  at ${f.t.toFixed(1)} s: ${f.message.split('\n')[0]}\n    preceded by ${describeRecord(faultBefore(f.t))}`,
    );
  }
  process.exit(1);
}
process.exit(0);
