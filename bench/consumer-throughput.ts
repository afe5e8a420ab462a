/**
 * Idempotent consume throughput next to raw amqplib consume, in the same run, on the same
 * broker and database. Each run pre-loads its own queue with N persistent 1 KiB JSON messages,
 * then times draining it:
 *
 * - raw amqplib: consume with manual acks, nothing else (the ceiling);
 * - raw amqplib + INSERT: one autocommit insert per message, then ack (no dedupe, no tx);
 * - idempotent, one transaction per message (ConsumerHost, batchSize 1);
 * - idempotent, batched (ConsumerHost, batchSize 50).
 *
 * Run: npx tsc -p tsconfig.json && node dist/bench/consumer-throughput.js [messages] [classic|quorum]
 */
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { migrate } from '../src/migrate/migrate.js';
import { silentLogger } from '../src/util/logger.js';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const TOTAL = Number(process.argv[2] ?? 20_000);
const QUEUE_TYPE = (process.argv[3] ?? 'classic') as 'classic' | 'quorum';
const PREFIX = `bench_${randomBytes(3).toString('hex')}`;
const SCHEMA = PREFIX;
const EXCHANGE = `${PREFIX}.events`;

interface Result {
  readonly name: string;
  readonly ms: number;
}

async function main(): Promise<void> {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 20 });
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  await migrate(pool, { schema: SCHEMA });
  await pool.query(
    `CREATE TABLE "${SCHEMA}".effects (id bigserial PRIMARY KEY, key text NOT NULL, amount int NOT NULL)`,
  );
  const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  const connection = await amqp.connect(AMQP_URL, { noDelay: true });
  connection.on('error', () => {});
  const setup = await connection.createConfirmChannel();
  await setup.assertExchange(EXCHANGE, 'topic', { durable: true });
  const queues: string[] = [];
  const body = (i: number) => {
    const padding = 'x'.repeat(
      1024 - JSON.stringify({ id: i, amount: i % 100, padding: '' }).length,
    );
    return Buffer.from(JSON.stringify({ id: i, amount: i % 100, padding }));
  };

  /** Declares a plain queue bound to its own routing key and fills it. */
  const fill = async (queue: string, routingKey: string) => {
    for (let i = 0; i < TOTAL; i += 1) {
      setup.publish(EXCHANGE, routingKey, body(i), {
        persistent: true,
        contentType: 'application/json',
        messageId: `${routingKey}-${i}`,
      });
      if (i % 1000 === 999) await setup.waitForConfirms();
    }
    await setup.waitForConfirms();
    const { messageCount } = await setup.checkQueue(queue);
    if (messageCount !== TOTAL) throw new Error(`${queue} holds ${messageCount}, not ${TOTAL}`);
  };

  const raw = async (
    name: string,
    routingKey: string,
    work?: (payload: { id: number; amount: number }) => Promise<void>,
  ): Promise<Result> => {
    const queue = `${PREFIX}.${routingKey}`;
    queues.push(queue);
    await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': QUEUE_TYPE } });
    await setup.bindQueue(queue, EXCHANGE, routingKey);
    await fill(queue, routingKey);
    const channel = await connection.createChannel();
    await channel.prefetch(work ? 16 : 200);
    const start = performance.now();
    let done = 0;
    await new Promise<void>((resolve, reject) => {
      void channel.consume(queue, (message) => {
        if (!message) return;
        const finish = () => {
          channel.ack(message);
          done += 1;
          if (done === TOTAL) resolve();
        };
        if (!work) return finish();
        work(JSON.parse(message.content.toString())).then(finish, reject);
      });
    });
    const ms = performance.now() - start;
    await channel.close();
    return { name, ms };
  };

  const idempotent = async (
    name: string,
    routingKey: string,
    options: { concurrency: number; batchSize: number },
  ): Promise<Result> => {
    const definition = {
      name: `${PREFIX}.${routingKey}`,
      exchange: EXCHANGE,
      routingKeys: [routingKey],
      queueType: QUEUE_TYPE,
      ...options,
      async handler(payload: { id: number; amount: number }, ctx: ConsumeContext) {
        await ctx.trx
          .insertInto(`${SCHEMA}.effects`)
          .values({ key: ctx.businessKey, amount: payload.amount })
          .execute();
      },
    };
    queues.push(...topologyQueueNames(topologyOf(definition)));
    const declare = new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      schema: SCHEMA,
      consumers: [definition],
      logger: silentLogger,
      retention: false,
    });
    await declare.start();
    await declare.stop();
    await fill(definition.name, routingKey);
    const host = new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      schema: SCHEMA,
      consumers: [definition],
      logger: silentLogger,
      retention: false,
    });
    const start = performance.now();
    await host.start();
    while (host.stats(definition.name).handled < TOTAL) await new Promise((r) => setTimeout(r, 5));
    const ms = performance.now() - start;
    await host.stop();
    return { name, ms };
  };

  const results: Result[] = [];
  try {
    results.push(await raw('raw amqplib, manual acks (prefetch 200)', 'raw'));
    results.push(
      await raw(
        'raw amqplib + autocommit INSERT per message (prefetch 16)',
        'rawinsert',
        async (p) => {
          await pool.query(`INSERT INTO "${SCHEMA}".effects (key, amount) VALUES ($1, $2)`, [
            `raw-${p.id}`,
            p.amount,
          ]);
        },
      ),
    );
    results.push(
      await idempotent('idempotent, 1 tx per message (concurrency 8)', 'single', {
        concurrency: Number(process.env.C ?? 8),
        batchSize: 1,
      }),
    );
    results.push(
      await idempotent('idempotent, batched 50 per tx (concurrency 4)', 'batched', {
        concurrency: 4,
        batchSize: 50,
      }),
    );
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT key)::int AS k FROM "${SCHEMA}".effects`,
    );
    if (rows[0].n !== 3 * TOTAL || rows[0].k !== 3 * TOTAL)
      throw new Error(`effects ${rows[0].n}/${rows[0].k}, expected ${3 * TOTAL}`);
  } finally {
    for (const q of queues) await setup.deleteQueue(q).catch(() => {});
    await setup.deleteExchange(EXCHANGE).catch(() => {});
    await connection.close().catch(() => {});
    await pool.query(`DROP SCHEMA "${SCHEMA}" CASCADE`);
    await db.destroy();
  }
  console.log(`${TOTAL} messages of 1 KiB, ${QUEUE_TYPE} queues`);
  for (const r of results) {
    console.log(
      `${r.name.padEnd(60)} ${Math.round((TOTAL / r.ms) * 1000)
        .toString()
        .padStart(7)} msgs/s  (${(r.ms / 1000).toFixed(2)} s)`,
    );
  }
}

await main();
