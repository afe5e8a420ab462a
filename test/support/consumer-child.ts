// A consumer host as a process of its own, for tests where an unhandled 'error' must really
// end it. Its pool is made as outboxkit makes its own (the Nest module's, say). Prints `started`
// on stdout once consuming; on SIGTERM stops and exits 0.
import { Kysely, PostgresDialect, sql } from 'kysely';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { createPool } from '../../src/sql/create-pool.js';
import { consoleLogger } from '../../src/util/logger.js';
import { requiredEnv } from './env.js';

interface Payload {
  readonly id: string;
  /** Keeps the transaction open this long after the effect is written. */
  readonly slowMs?: number;
}

const env = requiredEnv;
const schema = env('OKT_SCHEMA');
const logger = consoleLogger('info');
const pool = createPool({ connectionString: env('DATABASE_URL'), max: 6 }, logger);
// biome-ignore lint/suspicious/noExplicitAny: the effects table is the test's own
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
const host = new ConsumerHost({
  db,
  amqpUrl: env('AMQP_URL'),
  schema,
  consumers: [
    {
      name: env('OKT_CONSUMER'),
      exchange: env('OKT_EXCHANGE'),
      routingKeys: ['#'],
      concurrency: 4,
      retry: { maxAttempts: 20, backoff: { initialMs: 50, maxMs: 300 } },
      handler: async (payload: Payload, context) => {
        await sql`INSERT INTO ${sql.table(`${schema}.effects`)} (msg_id) VALUES (${payload.id})`.execute(
          context.trx,
        );
        if (payload.slowMs) await new Promise((resolve) => setTimeout(resolve, payload.slowMs));
      },
    },
  ],
  heartbeatSeconds: 2,
  reconnectBackoff: { initialMs: 50, maxMs: 500 },
  stopTimeoutMs: 5000,
  retention: false,
  logger,
});

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await host.stop();
    await db.destroy();
    process.exit(0);
  })();
});
await host.start();
process.stdout.write('started\n');
