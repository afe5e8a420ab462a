/**
 * Benchmark 8, end to end: producers commit business transactions (an order row and one outbox
 * row) as fast as they can; a relay publishes them; an idempotent consumer (batched
 * transactions) handles them, writing one row each. Throughput from the first commit to the
 * last handled message, and latency from each commit to its handler.
 *
 *   node dist/bench/end-to-end.js [--quick] [--json FILE] [--runs 3] [--messages 20000]
 *     [--producers 16]
 */
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { silentLogger } from '../src/util/logger.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  type Measurement,
  measurement,
  percentile,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  AMQP_URL,
  amqpConnect,
  benchSchema,
  newPool,
  serverVersions,
  sleep,
  uniqueName,
} from './support/bench-services.js';

export async function endToEnd(args: BenchArgs): Promise<BenchReport> {
  const count = intFlag(args, 'messages', 300, 20_000);
  const producers = intFlag(args, 'producers', 4, 16);
  const pool = newPool(producers + 2);
  const consumerPool = newPool(8);
  const db = new Kysely({ dialect: new PostgresDialect({ pool: consumerPool }) });
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
  const writer = new OutboxWriter({ schema: schema.name });
  const exchange = `${uniqueName('bench')}.e2e`;
  const committed = new Map<number, number>();
  const handled = new Map<number, number>();
  const definition: ConsumerDefinition<{ n: number }> = {
    name: `${exchange}.billing`,
    exchange,
    exchangeType: 'direct',
    routingKeys: ['order.placed'],
    concurrency: 4,
    batchSize: 50,
    async handler(body, ctx: ConsumeContext) {
      await ctx.trx.insertInto(`${schema.name}.effects`).values({ n: body.n }).execute();
      handled.set(body.n, performance.now());
    },
  };
  const host = new ConsumerHost({
    db,
    amqpUrl: AMQP_URL,
    schema: schema.name,
    consumers: [definition],
    logger: silentLogger,
    retention: false,
  });
  const throughput: number[] = [];
  const p50: number[] = [];
  const p99: number[] = [];
  const max: number[] = [];
  const pad = 'x'.repeat(1000);
  try {
    await host.start();
    for (let run = 1; run <= args.runs; run += 1) {
      committed.clear();
      handled.clear();
      const relayPool = newPool(8);
      const relay = new OutboxRelay({
        pool: relayPool,
        amqpUrl: AMQP_URL,
        schema: schema.name,
        logger: silentLogger,
      });
      await relay.start();
      while (!relay.isConnected) await sleep(5);
      await waitForQuiet();
      const base = run * 10_000_000;
      let next = 0;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: producers }, async () => {
          const client = await pool.connect();
          try {
            while (next < count) {
              const n = base + next;
              next += 1;
              await client.query('BEGIN');
              await client.query(`INSERT INTO "${schema.name}".orders (n) VALUES ($1)`, [n]);
              await writer.add(client, {
                exchange,
                routingKey: 'order.placed',
                payload: { n, pad },
              });
              await client.query('COMMIT');
              committed.set(n, performance.now());
            }
          } finally {
            client.release();
          }
        }),
      );
      while (handled.size < count) await sleep(2);
      const ms = Math.max(...handled.values()) - start;
      await relay.stop();
      await relayPool.end();
      const latencies = [...committed].map(([n, at]) => Math.max(0, handled.get(n)! - at));
      throughput.push((count / ms) * 1000);
      p50.push(percentile(latencies, 50));
      p99.push(percentile(latencies, 99));
      max.push(Math.max(...latencies));
      progress(
        `run ${run}: ${Math.round(throughput.at(-1)!)} msgs/s, commit to handler p50 ${p50.at(-1)!.toFixed(1)} ms, p99 ${p99.at(-1)!.toFixed(1)} ms`,
      );
    }
  } finally {
    await host.stop();
    const cleanup = await amqpConnect();
    const channel = await cleanup.createChannel();
    channel.on('error', () => {});
    for (const q of topologyQueueNames(topologyOf(definition)))
      await channel.deleteQueue(q).catch(() => {});
    await channel.deleteExchange(exchange).catch(() => {});
    await cleanup.close();
    await schema.drop();
    await db.destroy();
    await pool.end();
  }
  const rows: Measurement[] = [
    measurement('business write → relay → idempotent consumer', 'msgs/s', throughput),
    measurement('commit to handler, p50', 'ms', p50),
    measurement('commit to handler, p99', 'ms', p99),
    measurement('commit to handler, max', 'ms', max),
  ];
  return {
    benchmark: 'end-to-end',
    title: 'End to end: business write, relay, idempotent consumer',
    settings: {
      messages: count,
      producers,
      relay: 'defaults (batch 500, 4 lanes, LISTEN on)',
      consumer: 'batch 50, concurrency 4',
      ...versions,
    },
    sections: [
      {
        title: `${count} messages of 1 KiB, ${producers} producer connections, one row per transaction`,
        rows,
      },
    ],
    notes: [
      'the handler time is taken inside its transaction, just before the commit that precedes the ack',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(endToEnd);
