// One consumer of the soak's ledger as a process of its own, so the soak can SIGKILL it. Writes
// the same effect row as the fault scenarios' consumer. Prints `started` on stdout once
// consuming, then its counts as a JSON line every second when they changed; on SIGTERM stops
// and exits 0.
import { Kysely, PostgresDialect } from 'kysely';
import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { createPool } from '../../src/sql/create-pool.js';
import { consoleLogger } from '../../src/util/logger.js';
import { requiredEnv } from '../support/env.js';
import { soakConsumerDefinition } from './soak-consumer-definition.js';

const env = requiredEnv;
// The ledger's module logs unhandled rejections and carries on, as a test runner would; here one
// must end the process, so that the soak sees it as the crash it would be in production.
process.on('unhandledRejection', (reason) => {
  console.error('unhandled rejection:', reason);
  process.exit(70);
});
const schema = env('OKT_SCHEMA');
const name = env('OKT_CONSUMER');
const logger = consoleLogger('warn');
const pool = createPool({ connectionString: env('DATABASE_URL'), max: 6 }, logger);
// biome-ignore lint/suspicious/noExplicitAny: the ledger tables are the suite's own
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });

const host = new ConsumerHost({
  db,
  amqpUrl: env('AMQP_URL'),
  schema,
  consumers: [
    soakConsumerDefinition(
      name,
      env('OKT_EXCHANGE'),
      process.env.OKT_ORDERED === '1',
      schema,
      process.env.OKT_QUEUE_TYPE === 'quorum' ? 'quorum' : 'classic',
    ) as ConsumerDefinition,
  ],
  heartbeatSeconds: 2,
  reconnectBackoff: { initialMs: 50, maxMs: 1000 },
  publishTimeoutMs: 5000,
  startTimeoutMs: 60_000,
  stopTimeoutMs: 5000,
  retention: false,
  logger,
});

let timer: NodeJS.Timeout | undefined;
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    clearInterval(timer);
    await host.stop();
    await db.destroy();
    process.exit(0);
  })();
});
await host.start();
process.stdout.write('started\n');
let last = '';
timer = setInterval(() => {
  const now = JSON.stringify({ stats: host.stats(name), amqpConnects: host.amqpConnects });
  if (now === last) return;
  last = now;
  process.stdout.write(`${now}\n`);
}, 1000);
