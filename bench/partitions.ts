/**
 * Partitions: ordered consume throughput of one consumer split into 1, 2, 4 and 8 partitions,
 * in one run, for a handler that writes one row and then waits 5 ms on I/O (a timer). Each
 * variant pre-loads its partition set with the same messages (many ordering keys, each key's
 * messages in order), then times draining it, from the first handler call, with one
 * ConsumerHost: one process, in which every
 * partition has its own channel and runs `concurrency` handlers at a time, side by side with the
 * other partitions (partitions spread over processes the same way, one active per partition).
 * Also reports how evenly the consistent-hash exchange spread the keys: the fullest partition
 * against the mean. Per-key order is checked on every run.
 *
 *   node dist/bench/partitions.js [--quick] [--json FILE] [--runs 3] [--messages 4000]
 *     [--keys 1000] [--concurrency 1] [--partitions 1,2,4,8] [--queues classic]
 */
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { partitionExchangeName } from '../src/consumer/partition-set.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { silentLogger } from '../src/util/logger.js';
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
  AMQP_URL,
  amqpConnect,
  benchSchema,
  newPool,
  type PreparedMessage,
  publishAsyncConfirms,
  type QueueType,
  serverVersions,
  sleep,
  uniqueName,
} from './support/bench-services.js';

const HANDLER_IO_MS = 5;

export async function partitions(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 120, 4000);
  const keyCount = intFlag(args, 'keys', 64, 1000);
  const concurrency = intFlag(args, 'concurrency', 1, 1);
  const counts = listFlag(args, 'partitions', ['1', '2', '4', '8']).map(Number);
  const [queueType] = listFlag(args, 'queues', ['classic']) as QueueType[];
  if (counts[0] !== 1) throw new Error('--partitions must start with 1, the baseline');
  const pool = newPool(Math.max(...counts) * concurrency + 4);
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_partitions');
  const effects = `"${schema.name}".effects`;
  await pool.query(
    `CREATE TABLE ${effects} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, consumer text NOT NULL, key text NOT NULL, seq integer NOT NULL)`,
  );
  const setup = await connection.createConfirmChannel();
  setup.on('error', () => {});
  const exchange = `${uniqueName('bench')}.partitions`;
  await setup.assertExchange(exchange, 'direct', { durable: true });
  const queues = new Set<string>();
  const exchanges = new Set<string>();
  const rates = counts.map(() => [] as number[]);
  const ratios = counts.map(() => [] as number[]);
  const spread = counts.map(() => [] as number[]);
  try {
    for (let run = 1; run <= args.runs; run += 1) {
      const runRates: number[] = [];
      // Every other run in reverse, so that a drift of the machine's load favours no count.
      const order = run % 2 === 1 ? counts : [...counts].reverse();
      for (const n of order) {
        const routingKey = `p${n}r${run}`;
        let firstHandlerAt: number | undefined;
        const definition: ConsumerDefinition<{ key: string; seq: number }> = {
          name: `${exchange}.${routingKey}`,
          exchange,
          exchangeType: 'direct',
          routingKeys: [routingKey],
          queueType,
          ordered: true,
          partitions: n,
          concurrency,
          async handler(body, ctx) {
            firstHandlerAt ??= performance.now();
            await ctx.trx
              .insertInto(`${schema.name}.effects`)
              .values({ consumer: ctx.consumer, key: body.key, seq: body.seq })
              .execute();
            await sleep(HANDLER_IO_MS);
          },
        };
        const topology = topologyOf(definition);
        for (const q of topologyQueueNames(topology)) queues.add(q);
        exchanges.add(partitionExchangeName(definition.name, n));
        const hostOptions = {
          db,
          amqpUrl: AMQP_URL,
          schema: schema.name,
          consumers: [definition],
          logger: silentLogger,
          retention: false as const,
        };
        // Declare the partition set first, so the messages have queues to wait in.
        const declare = new ConsumerHost(hostOptions);
        await declare.start();
        await declare.stop();
        const messages: PreparedMessage[] = Array.from({ length: count }, (_, i) => {
          const key = `key-${i % keyCount}`;
          const seq = Math.floor(i / keyCount);
          return {
            exchange,
            routingKey,
            content: Buffer.from(JSON.stringify({ key, seq })),
            options: {
              persistent: true,
              contentType: 'application/json',
              messageId: `${routingKey}-${i}`,
              headers: { [ORDERING_KEY_HEADER]: key },
            },
          };
        });
        await publishAsyncConfirms(setup, messages, 5000);
        const depths: number[] = [];
        for (const q of topology.partitions!.queues) {
          depths.push((await setup.checkQueue(q)).messageCount);
        }
        if (depths.reduce((a, b) => a + b, 0) !== count) {
          throw new Error(`partition depths ${depths.join(', ')} do not add up to ${count}`);
        }
        spread[counts.indexOf(n)]!.push(Math.max(...depths) / (count / n));
        await waitForQuiet();
        const host = new ConsumerHost(hostOptions);
        await host.start();
        while (host.stats(definition.name).handled < count) await sleep(2);
        // From the first handler call: connecting and declaring are not consuming.
        const ms = performance.now() - firstHandlerAt!;
        await host.stop();
        const rate = (count / ms) * 1000;
        runRates[counts.indexOf(n)] = rate;
        progress(`run ${run}: ${n} partition(s): ${Math.round(rate)} msgs/s`);
        await assertKeyOrder(pool, effects, definition.name, count);
      }
      runRates.forEach((r, i) => {
        rates[i]!.push(r);
        ratios[i]!.push(r / runRates[0]!);
      });
    }
  } finally {
    for (const q of queues) await setup.deleteQueue(q).catch(() => {});
    for (const e of exchanges) await setup.deleteExchange(e).catch(() => {});
    await setup.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
    await schema.drop();
    await db.destroy();
  }
  const rows: Measurement[] = counts.map((n, i) =>
    measurement(
      `${n} partition${n === 1 ? '' : 's'}, concurrency ${concurrency} per partition`,
      'msgs/s',
      rates[i]!,
      { ratios: ratios[i]!, note: `fullest partition ${median(spread[i]!).toFixed(2)} x mean` },
    ),
  );
  return {
    benchmark: 'partitions',
    title: 'Partitions: ordered consume throughput by partition count (handler waits 5 ms)',
    settings: {
      messages: count,
      keys: keyCount,
      concurrencyPerPartition: concurrency,
      handlerIoMs: HANDLER_IO_MS,
      queueType,
      processes: 1,
      ...versions,
    },
    sections: [
      {
        title: `${queueType} partition queues, ${count} messages over ${keyCount} ordering keys; each handler inserts one row, then waits ${HANDLER_IO_MS} ms`,
        rows,
      },
    ],
    notes: ['ratio: to 1 partition, same run; target: at least 3.5 at 4 partitions'],
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1] ?? Number.NaN;
}

/** Every message handled once, each key's in publish order. */
async function assertKeyOrder(
  pool: ReturnType<typeof newPool>,
  effects: string,
  consumer: string,
  count: number,
): Promise<void> {
  const { rows } = await pool.query<{ key: string; seq: number }>(
    `SELECT key, seq FROM ${effects} WHERE consumer = $1 ORDER BY id`,
    [consumer],
  );
  if (rows.length !== count) throw new Error(`${rows.length} effects, expected ${count}`);
  const next = new Map<string, number>();
  for (const r of rows) {
    const expected = next.get(r.key) ?? 0;
    if (r.seq !== expected) throw new Error(`${r.key}: seq ${r.seq} where ${expected} was due`);
    next.set(r.key, expected + 1);
  }
}

if (isMain(import.meta.url)) await runStandalone(partitions);
