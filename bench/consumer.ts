/**
 * Benchmark 6, consumer: drain a pre-loaded queue of 1 KiB persistent messages with raw amqplib
 * (manual acks, nothing else), with a hand-written idempotent loop (raw amqplib and pg: BEGIN,
 * dedupe row, business row, COMMIT, ack, 16 in flight on a pool of 16), and with outboxkit's
 * idempotent consumer, one transaction per message (16 in flight on a pool of 16) and batched
 * transactions, in one run. Each handler writes one business row, with Kysely's query builder;
 * a last variant, one transaction per message, sends the loop's own INSERT text as a Kysely
 * `CompiledQuery`, so that it differs from the loop only by outboxkit. Every other run goes in
 * reverse order, so that a drift of the machine's load favours no variant.
 * Adapted from the consumer engineer's bench/consumer-throughput.ts, with runs, medians and JSON.
 *
 *   node dist/bench/consumer.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--queues classic]
 */
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { outboxTables } from '../src/sql/outbox-tables.js';
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
import {
  type CpuSnapshot,
  cpuMeasurements,
  cpuPerMessage,
  cpuSnapshot,
} from './support/process-cpu.js';

interface Variant {
  readonly name: string;
  readonly kind: 'raw' | 'hand-loop' | 'host';
  readonly concurrency?: number;
  readonly batchSize?: number;
  /**
   * How the handler writes its row: Kysely's query builder (`insertInto`, compiled at each
   * call), or the hand-written loop's own INSERT text as a `CompiledQuery`, so that both sides
   * run the same statement the same way and the ratio is outboxkit's alone.
   */
  readonly handler?: 'builder' | 'compiled';
  /** The variant whose rate, same run, this one's ratio is to. */
  readonly ratioTo?: number;
}

/** Transactions in flight, and the pool they run on, for the loop and the per-message host. */
const IN_FLIGHT = 16;
/** The host's default prefetch for concurrency 16 (2 x concurrency), given to the loop too. */
const LOOP_PREFETCH = 2 * IN_FLIGHT;

const HAND_LOOP = 1;
const PER_MESSAGE = 2;
const BATCHED = 3;
const COMPILED = 4;
const VARIANTS: Variant[] = [
  { name: 'raw amqplib consume, manual acks, prefetch 1000', kind: 'raw', ratioTo: PER_MESSAGE },
  {
    name: `hand-written loop: BEGIN, dedupe row, business row, COMMIT, ack; ${IN_FLIGHT} in flight, prefetch ${LOOP_PREFETCH}`,
    kind: 'hand-loop',
  },
  {
    name: `idempotent, one transaction per message, concurrency ${IN_FLIGHT} (ratio: to the hand-written loop)`,
    kind: 'host',
    concurrency: IN_FLIGHT,
    batchSize: 1,
    handler: 'builder',
    ratioTo: HAND_LOOP,
  },
  {
    name: 'idempotent, batches of 50 per transaction, concurrency 4 (ratio: to one per message)',
    kind: 'host',
    concurrency: 4,
    batchSize: 50,
    handler: 'builder',
    ratioTo: PER_MESSAGE,
  },
  {
    name: `idempotent, one transaction per message, concurrency ${IN_FLIGHT}, the loop's INSERT as a CompiledQuery (ratio: to the hand-written loop)`,
    kind: 'host',
    concurrency: IN_FLIGHT,
    batchSize: 1,
    handler: 'compiled',
    ratioTo: HAND_LOOP,
  },
];

/** The business row's INSERT, as the hand-written loop sends it. */
function insertEffectSql(effects: string): string {
  return `INSERT INTO ${effects} (key, amount) VALUES ($1, $2)`;
}

/**
 * What an application would write by hand for the same guarantees: per message, on its own
 * connection, BEGIN; the dedupe row (ON CONFLICT DO NOTHING); the business row when the key was
 * new; COMMIT; then the ack. Returns once `count` messages are acked.
 */
async function handLoop(
  connection: ChannelModel,
  pool: pg.Pool,
  queue: string,
  tables: { processed: string; effects: string },
  count: number,
): Promise<void> {
  const channel: Channel = await connection.createChannel();
  await channel.prefetch(LOOP_PREFETCH);
  const insertProcessed = `INSERT INTO ${tables.processed} (consumer, business_key, message_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`;
  const insertEffect = insertEffectSql(tables.effects);
  const handle = async (message: ConsumeMessage) => {
    const body = JSON.parse(message.content.toString('utf8')) as { id: number };
    const key = message.properties.messageId as string;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const claimed = await client.query(insertProcessed, [queue, key, key]);
      if (claimed.rowCount === 1) await client.query(insertEffect, [key, body.id % 100]);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };
  const waiting: ConsumeMessage[] = [];
  let running = 0;
  let done = 0;
  await new Promise<void>((resolve, reject) => {
    const next = () => {
      while (running < IN_FLIGHT && waiting.length > 0) {
        const message = waiting.shift()!;
        running += 1;
        handle(message).then(() => {
          channel.ack(message);
          running -= 1;
          done += 1;
          if (done === count) resolve();
          else next();
        }, reject);
      }
    };
    void channel.consume(queue, (message) => {
      if (!message) return;
      waiting.push(message);
      next();
    });
  });
  await channel.close();
}

/** CPU microseconds per message by process, for a progress line or a note. */
function cpuText(cpu: CpuSnapshot): string {
  return `Node ${cpu.node.toFixed(1)} / Postgres ${cpu.postgres.toFixed(1)} / RabbitMQ ${cpu.rabbitmq.toFixed(1)} µs`;
}

export async function consumer(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 500, 20_000);
  const queueTypes = listFlag(args, 'queues', ['classic']) as QueueType[];
  const pool = newPool(2);
  // The host's pool and the loop's: IN_FLIGHT connections each, so neither waits for the other.
  const hostPool = newPool(IN_FLIGHT);
  const loopPool = newPool(IN_FLIGHT);
  const db = new Kysely({ dialect: new PostgresDialect({ pool: hostPool }) });
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_consumer');
  const effects = `"${schema.name}".effects`;
  const { processed } = outboxTables(schema.name);
  const insertEffect = insertEffectSql(effects);
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
      const cpu = VARIANTS.map(() => [] as CpuSnapshot[]);
      for (let run = 1; run <= args.runs; run += 1) {
        const runRates: number[] = [];
        const order = [...VARIANTS.keys()];
        if (run % 2 === 0) order.reverse();
        for (const v of order) {
          const variant = VARIANTS[v]!;
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
          let used: CpuSnapshot;
          // A plain queue of the run's messages, for the two sides that consume it themselves.
          const preloadedQueue = async () => {
            const queue = `${exchange}.${routingKey}`;
            queues.add(queue);
            await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': type } });
            await setup.bindQueue(queue, exchange, routingKey);
            await publishAsyncConfirms(setup, messages, 5000);
            await waitForQuiet();
            return queue;
          };
          if (variant.kind === 'hand-loop') {
            const queue = await preloadedQueue();
            const before = cpuSnapshot();
            const start = performance.now();
            await handLoop(connection, loopPool, queue, { processed, effects }, count);
            ms = performance.now() - start;
            used = cpuPerMessage(before, cpuSnapshot(), count);
          } else if (variant.kind === 'raw') {
            const queue = await preloadedQueue();
            const channel = await connection.createChannel();
            await channel.prefetch(1000);
            const before = cpuSnapshot();
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
            used = cpuPerMessage(before, cpuSnapshot(), count);
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
              handler:
                variant.handler === 'compiled'
                  ? async (body, ctx: ConsumeContext) => {
                      await ctx.trx.executeQuery(
                        CompiledQuery.raw(insertEffect, [ctx.businessKey, body.id % 100]),
                      );
                    }
                  : async (body, ctx: ConsumeContext) => {
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
            const before = cpuSnapshot();
            const start = performance.now();
            await host.start();
            while (host.stats(definition.name).handled < count) await sleep(2);
            ms = performance.now() - start;
            used = cpuPerMessage(before, cpuSnapshot(), count);
            await host.stop();
          }
          runRates[v] = (count / ms) * 1000;
          cpu[v]!.push(used);
          progress(
            `${type} run ${run}: ${variant.name}: ${Math.round(runRates[v]!)} msgs/s; ${cpuText(used)}`,
          );
        }
        runRates.forEach((r, i) => {
          rates[i]!.push(r);
          const to = VARIANTS[i]!.ratioTo;
          if (to !== undefined) ratios[i]!.push(r / runRates[to]!);
        });
        progress(
          `${type} run ${run}: per message / hand loop ${(runRates[PER_MESSAGE]! / runRates[HAND_LOOP]!).toFixed(2)} (compiled INSERT ${(runRates[COMPILED]! / runRates[HAND_LOOP]!).toFixed(2)}), batched / per message ${(runRates[BATCHED]! / runRates[PER_MESSAGE]!).toFixed(2)}`,
        );
      }
      sections.push({
        title: `${type} queue, ${count} persistent 1 KiB JSON messages; each handler inserts one row`,
        rows: VARIANTS.map((v, i) =>
          measurement(v.name, 'msgs/s', rates[i]!, { ratios: ratios[i]! }),
        ),
      });
      sections.push({
        title: `${type} queue: CPU time per message, by process`,
        rows: VARIANTS.flatMap((v, i) => cpuMeasurements(v.name, cpu[i]!)),
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
    await loopPool.end();
    await pool.end();
  }
  return {
    benchmark: 'consumer',
    title: 'Consumer: raw consume against idempotent consume, per message and batched',
    settings: { messages: count, queueTypes, ...versions },
    sections,
    notes: [
      'ratio: same run; raw and batched to the idempotent consumer with one transaction per message, which is to the hand-written loop, as is the variant with the compiled INSERT',
      'targets: one per message at least 0.95 of the hand-written loop; batched at least 3 times one per message',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(consumer);
