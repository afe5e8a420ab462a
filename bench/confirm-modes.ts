/**
 * Benchmark 2, the ways RabbitMQ users make a publish safe, on the same 1 KiB persistent
 * messages to a durable queue, and the relay beside them: an AMQP transaction per message (with
 * and without `noDelay`), serial confirms, batch confirms, asynchronous confirms.
 *
 *   node dist/bench/confirm-modes.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--medium-messages 3000] [--slow-messages 200] [--queues classic]
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  listFlag,
  type Measurement,
  measurement,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  loadMessages,
  newPool,
  type PreparedMessage,
  prefillOutbox,
  publishAsyncConfirms,
  type QueueType,
  serverVersions,
} from './support/bench-services.js';
import { RELAY_DEFAULTS } from './support/relay-drain-timer.js';

// amqplib has no transaction API; its protocol definitions give the tx.select and tx.commit
// methods, sent with the channel's own RPC. The package's exports hide lib/, so go by path.
const require = createRequire(import.meta.url);
const defs = require(join(dirname(require.resolve('amqplib')), 'lib', 'defs.js')) as Record<
  string,
  number
>;
type RpcChannel = Channel & {
  rpc(method: number, fields: object, expect: number): Promise<unknown>;
};

async function txPerMessage(
  channel: Channel,
  messages: readonly PreparedMessage[],
): Promise<number> {
  const rpc = channel as RpcChannel;
  await rpc.rpc(defs['TxSelect']!, {}, defs['TxSelectOk']!);
  const start = performance.now();
  for (const m of messages) {
    channel.publish(m.exchange, m.routingKey, m.content, m.options);
    await rpc.rpc(defs['TxCommit']!, {}, defs['TxCommitOk']!);
  }
  return performance.now() - start;
}

async function batchConfirms(
  channel: ConfirmChannel,
  messages: readonly PreparedMessage[],
  batch: number,
): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < messages.length; i += 1) {
    const m = messages[i]!;
    channel.publish(m.exchange, m.routingKey, m.content, m.options);
    if ((i + 1) % batch === 0 || i === messages.length - 1) await channel.waitForConfirms();
  }
  return performance.now() - start;
}

interface Mode {
  readonly name: string;
  /** 'slow': the small message count; 'medium': a round trip per message, the medium count. */
  readonly pace?: 'slow' | 'medium';
  run(
    fast: ChannelModel,
    nagle: ChannelModel,
    messages: readonly PreparedMessage[],
  ): Promise<number>;
}

const modes: Mode[] = [
  {
    name: 'AMQP transaction per message, noDelay on',
    pace: 'medium',
    async run(fast, _nagle, messages) {
      const channel = await fast.createChannel();
      const ms = await txPerMessage(channel, messages);
      await channel.close();
      return ms;
    },
  },
  {
    name: "AMQP transaction per message, amqplib's default socket (Nagle on)",
    pace: 'slow',
    async run(_fast, nagle, messages) {
      const channel = await nagle.createChannel();
      const ms = await txPerMessage(channel, messages);
      await channel.close();
      return ms;
    },
  },
  ...[1, 100, 1000].map(
    (batch): Mode => ({
      name: batch === 1 ? 'serial confirms (wait after each publish)' : `batch confirms, ${batch}`,
      ...(batch === 1 && { pace: 'medium' as const }),
      async run(fast, _nagle, messages) {
        const channel = await fast.createConfirmChannel();
        const ms = await batchConfirms(channel, messages, batch);
        await channel.close();
        return ms;
      },
    }),
  ),
  ...[1000, 5000].map(
    (window): Mode => ({
      name: `asynchronous confirms, window ${window}, 1 channel`,
      async run(fast, _nagle, messages) {
        const channel = await fast.createConfirmChannel();
        const ms = await publishAsyncConfirms(channel, messages, window);
        await channel.close();
        return ms;
      },
    }),
  ),
];
const BASELINE = 'asynchronous confirms, window 5000, 1 channel';

export async function confirmModes(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 300, 20_000);
  const slowCount = intFlag(args, 'slow-messages', 10, 200);
  const mediumCount = intFlag(args, 'medium-messages', 100, 3000);
  const queueTypes = listFlag(args, 'queues', ['classic']) as QueueType[];
  const pool = newPool(4);
  const fast = await amqpConnect(true);
  const nagle = await amqpConnect(false);
  const versions = await serverVersions(pool, fast);
  const schema = await benchSchema(pool, 'bench_modes');
  const sections: { title: string; rows: Measurement[] }[] = [];
  const opened: BenchQueue[] = [];
  try {
    for (const type of queueTypes) {
      const queue = await BenchQueue.open(fast, type);
      opened.push(queue);
      const names = [
        ...modes.map((m) => m.name),
        `outboxkit relay (batch ${RELAY_DEFAULTS.batchSize}, ${RELAY_DEFAULTS.concurrency} lanes: its defaults), from the outbox`,
      ];
      const rates = names.map(() => [] as number[]);
      const ratios = names.map(() => [] as number[]);
      for (let run = 1; run <= args.runs; run += 1) {
        await prefillOutbox(pool, schema.outbox, count, queue.exchange, queue.routingKey);
        const messages = await loadMessages(pool, schema.outbox);
        const runRates: number[] = [];
        for (const mode of modes) {
          const subset =
            mode.pace === 'slow'
              ? messages.slice(0, slowCount)
              : mode.pace === 'medium'
                ? messages.slice(0, mediumCount)
                : messages;
          await queue.reset();
          await waitForQuiet();
          const ms = await mode.run(fast, nagle, subset);
          await queue.expectDepth(subset.length);
          runRates.push((subset.length / ms) * 1000);
          progress(`${type} run ${run}: ${mode.name}: ${Math.round(runRates.at(-1)!)} msgs/s`);
        }
        await queue.reset();
        await waitForQuiet();
        const ms = await timeRelayDrain(schema.name, count, RELAY_DEFAULTS);
        await queue.expectDepth(count);
        runRates.push((count / ms) * 1000);
        progress(`${type} run ${run}: relay: ${Math.round(runRates.at(-1)!)} msgs/s`);
        const base = runRates[names.indexOf(BASELINE)]!;
        runRates.forEach((r, i) => {
          rates[i]!.push(r);
          ratios[i]!.push(r / base);
        });
      }
      sections.push({
        title: `${type} durable queue, 1 KiB persistent messages (${count}; ${mediumCount} for the rows with a round trip per message, ${slowCount} for the Nagle row)`,
        rows: names.map((name, i) =>
          measurement(name, 'msgs/s', rates[i]!, { ratios: ratios[i]! }),
        ),
      });
    }
  } finally {
    for (const queue of opened) await queue.close();
    await schema.drop();
    await fast.close().catch(() => {});
    await nagle.close().catch(() => {});
    await pool.end();
  }
  return {
    benchmark: 'confirm-modes',
    title: 'Confirm modes, and the relay beside them',
    settings: {
      messages: count,
      mediumMessages: mediumCount,
      slowMessages: slowCount,
      queueTypes,
      ...versions,
    },
    sections,
    notes: [`ratio: to "${BASELINE}" measured in the same run`],
  };
}

if (isMain(import.meta.url)) await runStandalone(confirmModes);
