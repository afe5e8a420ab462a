// A relay or a consumer host stopped while its first RabbitMQ connect hangs (the broker took the
// TCP connection and answers nothing). Prints `stopped` once `stop()` has returned, then ends on
// its own, without `process.exit`: how long that takes is what the test measures.
import { Kysely, PostgresDialect } from 'kysely';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { createPool } from '../../src/sql/create-pool.js';
import { silentLogger } from '../../src/util/logger.js';
import { requiredEnv } from './env.js';

const kind = process.argv[2];
const schema = requiredEnv('OKT_SCHEMA');
const amqpUrl = requiredEnv('AMQP_URL');
const databaseUrl = requiredEnv('DATABASE_URL');

let stop: () => Promise<void>;
let started: Promise<void>;
if (kind === 'relay') {
  const relay = new OutboxRelay({ databaseUrl, amqpUrl, schema, logger: silentLogger });
  started = relay.start();
  stop = () => relay.stop();
} else {
  const pool = createPool({ connectionString: databaseUrl, max: 2 }, silentLogger);
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  const host = new ConsumerHost({
    db,
    amqpUrl,
    schema,
    consumers: [{ name: 'hung', exchange: 'hung', handler: async () => {} }],
    retention: false,
    logger: silentLogger,
  });
  started = host.start();
  stop = async () => {
    await host.stop();
    await db.destroy();
  };
}
// The start rejects: it was stopped while it waited for the broker.
started.catch(() => {});
await new Promise((resolve) => setTimeout(resolve, 500));
await stop();
process.stdout.write('stopped\n');
