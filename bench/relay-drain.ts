/**
 * Benchmark 1, relay drain: N pre-filled 1 KiB messages leave the outbox for a durable queue.
 * Next to it, in the same run, raw amqplib publishes the very same messages with asynchronous
 * confirms on one channel: the broker's limit, and the baseline of the headline ratio. A second
 * baseline drains the same outbox with the hand-written batched relay of issue 13
 * (`bench/support/hand-relay.ts`): what the outbox's guarantee costs at its simplest.
 *
 *   node dist/bench/relay-drain.js [--quick] [--json FILE] [--runs 3] [--messages 100000]
 *     [--queues classic,quorum] [--configs 1000x4,500x4] [--window 5000] (default: the relay's)
 */
import type pg from 'pg';
import {
  type BenchArgs,
  type BenchReport,
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
  loadMessages,
  newPool,
  prefillOutbox,
  publishAsyncConfirms,
  type QueueType,
  serverVersions,
} from './support/bench-services.js';
import { HAND_RELAY_BATCH, HAND_RELAY_BATCHES, handRelayDrain } from './support/hand-relay.js';
import {
  type CpuSnapshot,
  cpuMeasurements,
  cpuPerMessage,
  cpuSnapshot,
} from './support/process-cpu.js';
import { RELAY_DEFAULTS, timeRelayDrainAt } from './support/relay-drain-timer.js';

export interface RelayConfig {
  readonly batchSize: number;
  readonly concurrency: number;
}

export function parseConfigs(specs: readonly string[]): RelayConfig[] {
  return specs.map((spec) => {
    const [batchSize, concurrency] = spec.split('x').map(Number);
    if (!batchSize || !concurrency) throw new Error(`config ${spec}: expected BATCHxLANES`);
    return { batchSize, concurrency };
  });
}

/** `timeRelayDrainAt` on the benchmarks' database (`DATABASE_URL`). Returns milliseconds. */
export function timeRelayDrain(
  schema: string,
  expected: number,
  config: RelayConfig,
  extra: { pollIntervalMs?: number; onDrained?: () => void } = {},
): Promise<number> {
  return timeRelayDrainAt(DATABASE_URL, schema, expected, config, extra);
}

async function count(pool: pg.Pool, outbox: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${outbox}`);
  return rows[0]!.n;
}

export async function relayDrain(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 500, 100_000);
  const window = intFlag(args, 'window', 1000, 5000);
  const queueTypes = listFlag(args, 'queues', ['classic', 'quorum']) as QueueType[];
  const configs = parseConfigs(
    listFlag(args, 'configs', [`${RELAY_DEFAULTS.batchSize}x${RELAY_DEFAULTS.concurrency}`]),
  );
  const pool = newPool(4);
  const handPool = newPool(HAND_RELAY_BATCHES);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_drain');
  const sections: BenchReport['sections'][number][] = [];
  const idle: number[] = [];
  const opened: BenchQueue[] = [];
  try {
    for (const type of queueTypes) {
      const queue = await BenchQueue.open(connection, type);
      opened.push(queue);
      const baseline: number[] = [];
      const baselineCpu: CpuSnapshot[] = [];
      const hand: number[] = [];
      const handCpu: CpuSnapshot[] = [];
      const handRatios: number[] = [];
      const relayCpu: CpuSnapshot[][] = configs.map(() => []);
      const relay: number[][] = configs.map(() => []);
      const ratios: number[][] = configs.map(() => []);
      const toHand: number[][] = configs.map(() => []);
      for (let run = 1; run <= args.runs; run += 1) {
        progress(`${type}: run ${run}/${args.runs}: filling the outbox with ${messages} rows`);
        await prefillOutbox(pool, schema.outbox, messages, queue.exchange, queue.routingKey);
        const prepared = await loadMessages(pool, schema.outbox);
        const measureBaseline = async () => {
          await queue.reset();
          idle.push(await waitForQuiet());
          const channel = await connection.createConfirmChannel();
          channel.on('error', () => {});
          const cpu = cpuSnapshot();
          const ms = await publishAsyncConfirms(channel, prepared, window);
          baselineCpu.push(cpuPerMessage(cpu, cpuSnapshot(), messages));
          await channel.close();
          await queue.expectDepth(messages);
          return (messages / ms) * 1000;
        };
        const refill = async () => {
          if ((await count(pool, schema.outbox)) === 0) {
            await prefillOutbox(pool, schema.outbox, messages, queue.exchange, queue.routingKey);
          }
        };
        const measureHand = async () => {
          await refill();
          await queue.reset();
          idle.push(await waitForQuiet());
          const cpu = cpuSnapshot();
          const ms = await handRelayDrain(handPool, connection, schema.outbox, messages);
          handCpu.push(cpuPerMessage(cpu, cpuSnapshot(), messages));
          await queue.expectDepth(messages);
          return (messages / ms) * 1000;
        };
        const measureRelay = async (i: number) => {
          await refill();
          await queue.reset();
          idle.push(await waitForQuiet());
          const cpu = cpuSnapshot();
          let drained: CpuSnapshot | undefined;
          const ms = await timeRelayDrain(schema.name, messages, configs[i]!, {
            onDrained: () => {
              drained = cpuSnapshot();
            },
          });
          relayCpu[i]!.push(cpuPerMessage(cpu, drained ?? cpuSnapshot(), messages));
          await queue.expectDepth(messages);
          const left = await count(pool, schema.outbox);
          if (left !== 0) throw new Error(`${left} rows left in the outbox`);
          return (messages / ms) * 1000;
        };
        // Alternate the order, so that drift (a neighbour's load, a growing WAL) hits both sides.
        let base = 0;
        let handRate = 0;
        const rates: number[] = [];
        if (run % 2 === 1) {
          base = await measureBaseline();
          handRate = await measureHand();
        }
        for (let i = 0; i < configs.length; i += 1) rates.push(await measureRelay(i));
        if (run % 2 === 0) {
          handRate = await measureHand();
          base = await measureBaseline();
        }
        baseline.push(base);
        hand.push(handRate);
        handRatios.push(handRate / base);
        rates.forEach((rate, i) => {
          relay[i]!.push(rate);
          ratios[i]!.push(rate / base);
          toHand[i]!.push(rate / handRate);
        });
        progress(
          `${type}: run ${run}: baseline ${Math.round(base)}/s, hand ${Math.round(handRate)}/s, relay ${rates
            .map((r, i) => `${configs[i]!.batchSize}x${configs[i]!.concurrency} ${Math.round(r)}/s`)
            .join(', ')}`,
        );
      }
      const rows: Measurement[] = [
        measurement(
          `raw amqplib async confirms, window ${window}, 1 channel (baseline)`,
          'msgs/s',
          baseline,
          {
            ratios: baseline.map(() => 1),
          },
        ),
        measurement(
          `hand-written relay (issue 13): ${HAND_RELAY_BATCHES} batches of ${HAND_RELAY_BATCH} in flight`,
          'msgs/s',
          hand,
          { ratios: handRatios },
        ),
        ...configs.map((c, i) =>
          measurement(
            `outboxkit relay, batch ${c.batchSize}, ${c.concurrency} lanes`,
            'msgs/s',
            relay[i]!,
            {
              ratios: ratios[i]!,
              note: `relay/hand ${median(toHand[i]!).toFixed(2)}, runs ${toHand[i]!.map((r) => r.toFixed(2)).join(' ')}`,
            },
          ),
        ),
      ];
      sections.push({ title: `${type} durable queue, ${messages} messages of 1 KiB`, rows });
      // Where the two cores went: on a machine shared by all three, the relay's own CPU (claim,
      // row parsing, delete) is taken from the broker, which is the limit of both sides.
      sections.push({
        title: `${type}: CPU time per message, by process`,
        rows: [
          ...cpuMeasurements('baseline', baselineCpu),
          ...cpuMeasurements('hand-written relay', handCpu),
          ...configs.flatMap((c, i) =>
            cpuMeasurements(`relay ${c.batchSize}x${c.concurrency}`, relayCpu[i]!),
          ),
        ],
      });
    }
  } finally {
    for (const queue of opened) await queue.close();
    await schema.drop();
    await connection.close().catch(() => {});
    await pool.end();
    await handPool.end();
  }
  return {
    benchmark: 'relay-drain',
    title: 'Relay drain: pre-filled outbox to a durable queue',
    settings: { messages, window, queueTypes, configs, ...versions },
    sections,
    notes: [
      'ratio: median over runs of relay rate / baseline rate measured in the same run',
      'relay/hand: median over runs of relay rate / hand-written relay rate in the same run',
      'baseline publishes the same rows (loaded before the clock starts) with the same properties',
      `machine idle before the timed runs: ${idle.map((i) => `${Math.round(i * 100)}%`).join(' ')}`,
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(relayDrain);
