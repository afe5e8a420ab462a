import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ConsumerHost } from './dist/src/consumer/consumer-host.js';
import { silentLogger } from './dist/src/util/logger.js';
import { TcpProxy } from './dist/test/support/tcp-proxy.js';
import { TestBroker } from './dist/test/support/test-broker.js';
import { testDatabase } from './dist/test/support/test-database.js';

const which = process.argv[2];
const t = await testDatabase('hosthung');
const broker = await TestBroker.open();
const ex = broker.name('hh');
const amqpProxy = await TcpProxy.start('127.0.0.1', 5672);
const pgProxy = await TcpProxy.start('127.0.0.1', 5432);
const pool = new pg.Pool({
  connectionString: pgProxy.url('postgres://postgres@127.0.0.1:5432/test'),
  max: 10,
});
pool.on('error', () => {});
const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
let handled = 0;
const host = new ConsumerHost({
  db,
  amqpUrl: amqpProxy.url('amqp://guest:guest@127.0.0.1:5672'),
  schema: t.schema,
  retention: false,
  stopTimeoutMs: 2000,
  logger: silentLogger,
  consumers: [
    {
      name: `${t.schema}-hh`,
      exchange: ex,
      queueType: 'classic',
      handler: async () => {
        handled++;
      },
    },
  ],
});
await host.start();
for (let i = 0; i < 3000; i++)
  broker.channel.publish(ex, 'k', Buffer.from(JSON.stringify({ i })), {
    messageId: `m${i}`,
    contentType: 'application/json',
  });
while (handled < 300) await new Promise((r) => setTimeout(r, 10));
if (which !== 'pg') amqpProxy.pause();
if (which !== 'amqp') pgProxy.pause();
const t0 = performance.now();
await host.stop();
console.log(which, 'host stop took', Math.round(performance.now() - t0), 'ms (stopTimeoutMs 2000)');
const t1 = performance.now();
await Promise.race([db.destroy(), new Promise((r) => setTimeout(r, 30000))]);
console.log(which, 'db.destroy took', Math.round(performance.now() - t1));
amqpProxy.resume();
pgProxy.resume();
await amqpProxy.close();
await pgProxy.close();
await broker.channel.deleteQueue(`${t.schema}-hh`).catch(() => {});
await broker.close();
await t.close();
setTimeout(() => {
  console.log('resources', process.getActiveResourcesInfo().join(','));
}, 1000).unref();
const tEnd = performance.now();
process.on('exit', () =>
  console.log(which, 'exit', Math.round(performance.now() - tEnd), 'ms after cleanup'),
);
