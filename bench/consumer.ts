/**
 * Benchmark 6, consumer: drain a pre-loaded queue of 1 KiB persistent messages with raw amqplib
 * (manual acks, nothing else), and with outboxkit's idempotent consumer, one transaction per
 * message and batched transactions, in one run. Each handler writes one business row.
 * Adapted from the consumer engineer's bench/consumer-throughput.ts, with runs, medians and JSON.
 *
 *   node dist/bench/consumer.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--queues classic]
 */
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
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
  payload,
  publishAsyncConfirms,
  type QueueType,
  serverVersions,
  sleep,
  uniqueName,
} from './support/bench-services.js';

interface Variant {
  readonly name: string;
  readonly concurrency?: number;
  readonly batchSize?: number;
}

const VARIANTS: Variant[] = [
  { name: 'raw amqplib consume, manual acks, prefetch 1000' },
  {
    name: 'idempotent, one transaction per message, concurrency 16',
    concurrency: 16,
    batchSize: 1,
  },
  {
    name: 'idempotent, batches of 50 per transaction, concurrency 4',
    concurrency: 4,
    batchSize: 50,
  },
];
const PER_MESSAGE = 1;

export async function consumer(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 500, 20_000);
  const queueTypes = listFlag(args, 'queues', ['classic']) as QueueType[];
  const pool = newPool(24);
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_consumer');
  const effects = `"${schema.name}".effects`;
  await pool.query(
    `CREATE TABLE ${effects} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL, amount integer NOT NULL)`,
  );
  const setup = await connection.createConfirmChannel();
  setup.on('error', () => {});
  const exchange = `${uniqueName('bench')}.consume`;
  await setup.assertExchange(exchange, 'direct', { durable: true });
  const queues = new Set<string>();
  const sections: { title: string; rows: Measurement[] }[] = [];
  try {
    for (const type of queueTypes) {
      const rates = VARIANTS.map(() => [] as number[]);
      const ratios = VARIANTS.map(() => [] as number[]);
      for (let run = 1; run <= args.runs; run += 1) {
        const runRates: number[] = [];
        for (const [v, variant] of VARIANTS.entries()) {
          const routingKey = `v${v}r${run}${type}`;
          const messages: PreparedMessage[] = Array.from({ length: count }, (_, i) => ({
            exchange,
            routingKey,
            content: payload(i),
            options: {
              persistent: true,
              contentType: 'application/json',
              messageId: `${routingKey}-${i}`,
            },
          }));
          let ms: number;
          if (variant.batchSize === undefined) {
            const queue = `${exchange}.${routingKey}`;
            queues.add(queue);
            await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': type } });
            await setup.bindQueue(queue, exchange, routingKey);
            await publishAsyncConfirms(setup, messages, 5000);
            await waitForQuiet();
            const channel = await connection.createChannel();
            await channel.prefetch(1000);
            const start = performance.now();
            let done = 0;
            await new Promise<void>((resolve) => {
              void channel.consume(queue, (message) => {
                if (!message) return;
                channel.ack(message);
                done += 1;
                if (done === count) resolve();
              });
            });
            ms = performance.now() - start;
            await channel.close();
          } else {
            const definition: ConsumerDefinition<{ id: number }> = {
              name: `${exchange}.${routingKey}`,
              exchange,
              exchangeType: 'direct',
              routingKeys: [routingKey],
              queueType: type,
              concurrency: variant.concurrency,
              batchSize: variant.batchSize,
              async handler(body, ctx: ConsumeContext) {
                await ctx.trx
                  .insertInto(`${schema.name}.effects`)
                  .values({ key: ctx.businessKey, amount: body.id % 100 })
                  .execute();
              },
            };
            for (const q of topologyQueueNames(topologyOf(definition))) queues.add(q);
            const hostOptions = {
              db,
              amqpUrl: AMQP_URL,
              schema: schema.name,
              consumers: [definition],
              logger: silentLogger,
              retention: false as const,
            };
            // Declare the topology first, so the messages have a queue to wait in.
            const declare = new ConsumerHost(hostOptions);
            await declare.start();
            await declare.stop();
            await publishAsyncConfirms(setup, messages, 5000);
            await waitForQuiet();
            const host = new ConsumerHost(hostOptions);
            const start = performance.now();
            await host.start();
            while (host.stats(definition.name).handled < count) await sleep(2);
            ms = performance.now() - start;
            await host.stop();
          }
          runRates.push((count / ms) * 1000);
          progress(`${type} run ${run}: ${variant.name}: ${Math.round(runRates.at(-1)!)} msgs/s`);
        }
        runRates.forEach((r, i) => {
          rates[i]!.push(r);
          ratios[i]!.push(r / runRates[PER_MESSAGE]!);
        });
      }
      sections.push({
        title: `${type} queue, ${count} persistent 1 KiB JSON messages; each handler inserts one row`,
        rows: VARIANTS.map((v, i) =>
          measurement(v.name, 'msgs/s', rates[i]!, { ratios: ratios[i]! }),
        ),
      });
    }
    const { rows } = await pool.query<{ n: number; k: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT key)::int AS k FROM ${effects}`,
    );
    const expected = count * args.runs * queueTypes.length * (VARIANTS.length - 1);
    if (rows[0]!.n !== expected || rows[0]!.k !== expected) {
      throw new Error(`effects: ${rows[0]!.n} rows, ${rows[0]!.k} keys, expected ${expected}`);
    }
  } finally {
    for (const q of queues) await setup.deleteQueue(q).catch(() => {});
    await setup.deleteExchange(exchange).catch(() => {});
    await connection.close().catch(() => {});
    await schema.drop();
    await db.destroy();
  }
  return {
    benchmark: 'consumer',
    title: 'Consumer: raw consume against idempotent consume, per message and batched',
    settings: { messages: count, queueTypes, ...versions },
    sections,
    notes: [
      'ratio: to the idempotent consumer with one transaction per message, same run; target: batched at least 2',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(consumer);
