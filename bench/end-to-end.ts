/**
 * Benchmark 8, end to end: producers commit business transactions (an order row and one outbox
 * row) as fast as they can; a relay publishes them; an idempotent consumer (batched
 * transactions) handles them, writing one row each. Throughput from the first commit to the
 * last handled message, latency from each commit to its handler, and the CPU time each process
 * spends per message.
 *
 * Producer, relay and consumer each run in a child process of their own (bench/support/e2e-*),
 * so that /proc/PID/stat tells their CPU apart; Postgres and RabbitMQ are read the same way.
 * On a small machine the stages share the cores, so the CPU the whole pipeline spends per
 * message bounds its throughput; the machine's busy share says whether it waited instead.
 *
 *   node dist/bench/end-to-end.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--producers 16] [--vacuum] [--prepared-statements]
 *
 * --vacuum runs VACUUM ANALYZE on the outbox before each run, to tell the cost of the previous
 * runs' dead rows apart. --prepared-statements turns the producers' writer's
 * `preparedStatements` on.
 */
import type pg from 'pg';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  type Measurement,
  measurement,
  onInterrupt,
  percentile,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  benchSchema,
  newPool,
  serverVersions,
  uniqueName,
} from './support/bench-services.js';
import { e2eConsumerDefinition } from './support/e2e-consumer.js';
import { E2E_APPLICATION_NAME, Stage, type StageSettings } from './support/e2e-protocol.js';
import {
  busyShare,
  CLOCK_TICKS,
  cpuSnapshot,
  machineCpu,
  processCpuUs,
  procStat,
} from './support/process-cpu.js';

/** CPU time of every process of the pipeline, microseconds. */
interface PipelineCpu {
  readonly producer: number;
  readonly relay: number;
  readonly consumer: number;
  readonly postgres: number;
  readonly rabbitmq: number;
}

const PROCESSES = ['producer', 'relay', 'consumer', 'postgres', 'rabbitmq'] as const;
const PROCESS_NAMES: Record<(typeof PROCESSES)[number], string> = {
  producer: 'producer Node',
  relay: 'relay Node',
  consumer: 'consumer Node',
  postgres: "Postgres (the stages' backends, background processes)",
  rabbitmq: 'RabbitMQ',
};

type StageName = 'producer' | 'relay' | 'consumer';
/** Whom a Postgres process works for: a stage's backends, or the server's own processes. */
type BackendGroup = StageName | 'background';
const BACKEND_GROUPS: readonly BackendGroup[] = ['producer', 'relay', 'consumer', 'background'];

/**
 * The Postgres processes that work for the pipeline: the stages' backends (by their
 * application_name), the server's background processes (WAL writer, checkpointer, autovacuum,
 * ...) and the postmaster; not the backends of other clients sharing the server.
 */
async function pipelineBackends(pool: pg.Pool): Promise<Map<number, BackendGroup>> {
  const { rows } = await pool.query<{
    pid: number;
    application_name: string;
    backend_type: string;
  }>(
    "SELECT pid, application_name, backend_type FROM pg_stat_activity WHERE application_name LIKE $1 OR backend_type <> 'client backend'",
    [`${E2E_APPLICATION_NAME}-%`],
  );
  const groups = new Map<number, BackendGroup>();
  for (const r of rows) {
    const stage = r.application_name.slice(E2E_APPLICATION_NAME.length + 1);
    groups.set(r.pid, r.backend_type === 'client backend' ? (stage as StageName) : 'background');
  }
  const postmaster = rows.length > 0 ? Number(procStat(rows[0]!.pid)?.[1]) : Number.NaN;
  if (Number.isSafeInteger(postmaster)) groups.set(postmaster, 'background');
  return groups;
}

/** CPU time so far of each of the pipeline's processes, microseconds. */
interface PipelineReading {
  readonly stages: Record<StageName, number>;
  readonly backends: ReadonlyMap<number, { readonly group: BackendGroup; readonly us: number }>;
  readonly rabbitmq: number;
}

async function readPipeline(
  pool: pg.Pool,
  stages: Record<StageName, Stage>,
  known: PipelineReading | undefined = undefined,
): Promise<PipelineReading> {
  const groups = await pipelineBackends(pool);
  for (const [pid, { group }] of known?.backends ?? [])
    if (!groups.has(pid)) groups.set(pid, group);
  return {
    stages: {
      producer: processCpuUs(stages.producer.pid),
      relay: processCpuUs(stages.relay.pid),
      consumer: processCpuUs(stages.consumer.pid),
    },
    backends: new Map([...groups].map(([pid, group]) => [pid, { group, us: processCpuUs(pid) }])),
    rabbitmq: cpuSnapshot().rabbitmq,
  };
}

/** CPU microseconds each process spent between two readings, Postgres's also by group. */
function pipelineCpu(
  from: PipelineReading,
  to: PipelineReading,
): PipelineCpu & { readonly postgresBy: Record<BackendGroup, number> } {
  const postgresBy: Record<BackendGroup, number> = {
    producer: 0,
    relay: 0,
    consumer: 0,
    background: 0,
  };
  // A backend started in between counts from 0; one that ended in between took its ticks along.
  for (const [pid, { group, us }] of to.backends) {
    postgresBy[group] += Math.max(0, us - (from.backends.get(pid)?.us ?? 0));
  }
  return {
    producer: to.stages.producer - from.stages.producer,
    relay: to.stages.relay - from.stages.relay,
    consumer: to.stages.consumer - from.stages.consumer,
    postgres: BACKEND_GROUPS.reduce((sum, g) => sum + postgresBy[g], 0),
    postgresBy,
    rabbitmq: Math.max(0, to.rabbitmq - from.rabbitmq),
  };
}

export async function endToEnd(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 300, 20_000);
  const producers = intFlag(args, 'producers', 4, 16);
  const pool = newPool(2);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  await connection.close();
  const schema = await benchSchema(pool, 'bench_e2e');
  await pool.query(
    `CREATE TABLE "${schema.name}".orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL)`,
  );
  await pool.query(
    `CREATE TABLE "${schema.name}".effects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n integer NOT NULL)`,
  );
  const exchange = `${uniqueName('bench')}.e2e`;
  const definition = e2eConsumerDefinition(schema.name, exchange);
  const preparedStatements = args.extra.get('prepared-statements') === 'true';
  const settings = (base: number): StageSettings => ({
    schema: schema.name,
    exchange,
    count,
    producers,
    base,
    preparedStatements,
  });
  const stages = new Set<Stage>();
  const forgetStages = onInterrupt(async () => {
    for (const stage of stages) stage.kill();
  });
  const start = async (name: string, script: string, base: number) => {
    const stage = Stage.start(name, script, settings(base));
    stages.add(stage);
    await stage.next('ready');
    return stage;
  };
  const stop = async (stage: Stage) => {
    await stage.stop();
    stages.delete(stage);
  };
  const throughput: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  const max: number[] = [];
  const busy: number[] = [];
  const iowait: number[] = [];
  const machine: number[] = [];
  const postgresBy = new Map<BackendGroup, number[]>(BACKEND_GROUPS.map((g) => [g, []]));
  const perProcess = new Map<(typeof PROCESSES)[number] | 'total', number[]>(
    [...PROCESSES, 'total' as const].map((p) => [p, []]),
  );
  try {
    const consumer = await start('consumer', './e2e-consumer.js', 0);
    for (let run = 1; run <= args.runs; run += 1) {
      const base = run * 10_000_000;
      // Diagnosis: start each run from an outbox without the previous runs' dead rows.
      if (args.extra.get('vacuum') === 'true') await pool.query(`VACUUM ANALYZE ${schema.outbox}`);
      const relay = await start('relay', './e2e-relay.js', base);
      const producer = await start('producer', './e2e-producer.js', base);
      await waitForQuiet();
      const cpuFrom = await readPipeline(pool, { producer, relay, consumer });
      const machineFrom = machineCpu();
      consumer.send({ type: 'expect', base, count });
      producer.send({ type: 'go' });
      await producer.next('done');
      await consumer.next('done');
      const cpuTo = await readPipeline(pool, { producer, relay, consumer }, cpuFrom);
      const cpu = pipelineCpu(cpuFrom, cpuTo);
      const machineTo = machineCpu();
      producer.send({ type: 'send-times' });
      consumer.send({ type: 'send-times' });
      const commits = await producer.next('times');
      const handles = await consumer.next('times');
      await stop(producer);
      await stop(relay);

      const latencies = commits.times.map((at, i) => Math.max(0, handles.times[i]! - at));
      const ms = Math.max(...handles.times) - commits.startedAt;
      throughput.push((count / ms) * 1000);
      p50.push(percentile(latencies, 50));
      p99.push(percentile(latencies, 99));
      max.push(Math.max(...latencies));
      busy.push(busyShare(machineFrom, machineTo) * 100);
      const ticks =
        machineTo.busy - machineFrom.busy + machineTo.idle - machineFrom.idle || Number.NaN;
      iowait.push(((machineTo.iowait - machineFrom.iowait) / ticks) * 100);
      machine.push(((machineTo.busy - machineFrom.busy) * 1_000_000) / CLOCK_TICKS / count);
      let total = 0;
      for (const p of PROCESSES) {
        const us = cpu[p] / count;
        perProcess.get(p)!.push(us);
        total += us;
      }
      perProcess.get('total')!.push(total);
      for (const g of BACKEND_GROUPS) postgresBy.get(g)!.push(cpu.postgresBy[g] / count);
      progress(
        `run ${run}: ${Math.round(throughput.at(-1)!)} msgs/s, commit to handler p50 ${p50.at(-1)!.toFixed(1)} ms, p99 ${p99.at(-1)!.toFixed(1)} ms, ` +
          `CPU ${Math.round(total)} µs/msg (${PROCESSES.map((p) => `${p} ${Math.round(perProcess.get(p)!.at(-1)!)}`).join(', ')}; postgres ${BACKEND_GROUPS.map((g) => `${g} ${Math.round(postgresBy.get(g)!.at(-1)!)}`).join(', ')}), machine ${Math.round(busy.at(-1)!)}% busy`,
      );
    }
    await stop(consumer);
  } finally {
    for (const stage of stages) stage.kill();
    forgetStages();
    const cleanup = await amqpConnect();
    const channel = await cleanup.createChannel();
    channel.on('error', () => {});
    for (const q of topologyQueueNames(topologyOf(definition)))
      await channel.deleteQueue(q).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await cleanup.close();
    await schema.drop();
    await pool.end();
  }
  const rows: Measurement[] = [
    measurement('business write → relay → idempotent consumer', 'msgs/s', throughput),
    measurement('commit to handler, p50', 'ms', p50),
    measurement('commit to handler, p99', 'ms', p99),
    measurement('commit to handler, max', 'ms', max),
    measurement('machine CPU busy', '%', busy),
    measurement('machine CPU waiting on I/O', '%', iowait),
  ];
  const cpuRows: Measurement[] = [
    ...PROCESSES.map((p) => measurement(PROCESS_NAMES[p], 'µs/msg', perProcess.get(p)!)),
    measurement('total of the pipeline', 'µs/msg', perProcess.get('total')!),
    ...BACKEND_GROUPS.map((g) =>
      measurement(
        g === 'background' ? 'Postgres: background processes' : `Postgres: the ${g}'s backends`,
        'µs/msg',
        postgresBy.get(g)!,
      ),
    ),
    measurement('machine, every process', 'µs/msg', machine, {
      note: 'busy time of all cores; above the total by what else ran',
    }),
  ];
  return {
    benchmark: 'end-to-end',
    title: 'End to end: business write, relay, idempotent consumer',
    settings: {
      messages: count,
      producers,
      writer: preparedStatements ? 'preparedStatements: true' : 'defaults',
      relay: 'defaults (its own pool too), own process',
      consumer: 'batch 50, concurrency 4, own process',
      ...versions,
    },
    sections: [
      {
        title: `${count} messages of 1 KiB, ${producers} producer connections, one row per transaction`,
        rows,
      },
      { title: 'CPU time per message, by process', rows: cpuRows },
    ],
    notes: [
      'the handler time is taken inside its transaction, just before the commit that precedes the ack',
      'producer, relay and consumer each run in a process of their own; CPU is read from /proc/PID/stat (all threads) from the first commit to the last handled message',
      "Postgres counts the stages' backends (by application_name), its background processes and the postmaster, not other clients' backends; RabbitMQ counts the whole broker",
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(endToEnd);
