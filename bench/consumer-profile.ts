/**
 * Profiles the idempotent consumer alone, one transaction per message: preloads a queue, then
 * drains it with a ConsumerHost while the V8 profiler runs (only during the drain), and writes
 * the profile for `bench/support/profile-summary` or Chrome's DevTools. Not part of `run-all`.
 *
 *   node dist/bench/consumer-profile.js [--messages 10000] [--out consumer.cpuprofile]
 *     [--no-profile]
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { silentLogger } from '../src/util/logger.js';
import {
  AMQP_URL,
  amqpConnect,
  benchSchema,
  newPool,
  type PreparedMessage,
  payload,
  publishAsyncConfirms,
  sleep,
  uniqueName,
} from './support/bench-services.js';
import { cpuPerMessage, cpuSnapshot } from './support/process-cpu.js';

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

const count = Number(flag('messages') ?? 10_000);
const out = flag('out') ?? 'consumer.cpuprofile';
const profile = !process.argv.includes('--no-profile');

const pool = newPool(2);
const db = new Kysely({ dialect: new PostgresDialect({ pool: newPool(16) }) });
const connection = await amqpConnect();
const schema = await benchSchema(pool, 'bench_consumer_profile');
await pool.query(
  `CREATE TABLE "${schema.name}".effects (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, key text NOT NULL, amount integer NOT NULL)`,
);
const setup = await connection.createConfirmChannel();
const exchange = `${uniqueName('bench')}.profile`;
await setup.assertExchange(exchange, 'direct', { durable: true });
const definition: ConsumerDefinition<{ id: number }> = {
  name: `${exchange}.q`,
  exchange,
  exchangeType: 'direct',
  routingKeys: ['k'],
  concurrency: 16,
  batchSize: 1,
  async handler(body, ctx: ConsumeContext) {
    await ctx.trx
      .insertInto(`${schema.name}.effects`)
      .values({ key: ctx.businessKey, amount: body.id % 100 })
      .execute();
  },
};
const hostOptions = {
  db,
  amqpUrl: AMQP_URL,
  schema: schema.name,
  consumers: [definition],
  logger: silentLogger,
  retention: false as const,
};
try {
  const declare = new ConsumerHost(hostOptions);
  await declare.start();
  await declare.stop();
  const messages: PreparedMessage[] = Array.from({ length: count }, (_, i) => ({
    exchange,
    routingKey: 'k',
    content: payload(i),
    options: { persistent: true, contentType: 'application/json', messageId: `m-${i}` },
  }));
  await publishAsyncConfirms(setup, messages, 5000);
  await sleep(500);
  const session = new Session();
  session.connect();
  if (profile) {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
  }
  const host = new ConsumerHost(hostOptions);
  const before = cpuSnapshot();
  const start = performance.now();
  await host.start();
  while (host.stats(definition.name).handled < count) await sleep(2);
  const ms = performance.now() - start;
  const used = cpuPerMessage(before, cpuSnapshot(), count);
  if (profile) {
    const { profile: data } = await session.post('Profiler.stop');
    await writeFile(out, JSON.stringify(data));
  }
  session.disconnect();
  await host.stop();
  console.log(
    `${Math.round((count / ms) * 1000)} msgs/s; CPU µs/msg Node ${used.node.toFixed(1)} / Postgres ${used.postgres.toFixed(1)} / RabbitMQ ${used.rabbitmq.toFixed(1)}`,
  );
} finally {
  for (const q of topologyQueueNames(topologyOf(definition)))
    await setup.deleteQueue(q).catch(() => {});
  await setup.deleteExchange(exchange).catch(() => {});
  await connection.close().catch(() => {});
  await schema.drop();
  await db.destroy();
  await pool.end();
}
