// A process running one partitioned ordered consumer, for the partition tests: each handled
// message writes (key, seq, pid) in its transaction, so the test sees per-key order, duplicates
// and which process handled what. Prints `started` once consuming; on SIGTERM stops, prints
// `stats <json>` (the consumer's totals and its partition hand-overs) and exits 0.
import { Kysely, PostgresDialect, sql } from 'kysely';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { createPool } from '../../src/sql/create-pool.js';
import { consoleLogger } from '../../src/util/logger.js';
import { requiredEnv } from './env.js';

interface Payload {
  readonly key: string;
  readonly seq: number;
}

const env = requiredEnv;
const schema = env('OKT_SCHEMA');
const table = env('OKT_TABLE');
const partitions = Number(env('OKT_PARTITIONS'));
const concurrency = 2;
const handlerMs = Number(process.env.OKT_HANDLER_MS ?? '0');
const logger = consoleLogger('warn');
// Room for every partition active here at once (the survivors take the dead process's share).
const pool = createPool(
  { connectionString: env('DATABASE_URL'), max: partitions * concurrency + 2 },
  logger,
);
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
      queueType: process.env.OKT_QUEUE_TYPE === 'quorum' ? 'quorum' : 'classic',
      ordered: true,
      partitions,
      concurrency,
      retry: { maxAttempts: 5, backoff: { initialMs: 20, maxMs: 100 } },
      timeoutMs: 10_000,
      handler: async (payload: Payload, context) => {
        await sql`INSERT INTO ${sql.table(`${schema}.${table}`)} (key, seq, pid)
          VALUES (${payload.key}, ${payload.seq}, ${process.pid})`.execute(context.trx);
        if (handlerMs > 0) await new Promise((resolve) => setTimeout(resolve, handlerMs));
      },
    },
  ],
  heartbeatSeconds: 2,
  reconnectBackoff: { initialMs: 50, maxMs: 500 },
  stopTimeoutMs: 5000,
  retention: false,
  rebalanceIntervalMs: Number(process.env.OKT_REBALANCE_MS ?? '5000'),
  logger,
});

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await host.stop();
    const stats = { ...host.stats(env('OKT_CONSUMER')), handOvers: host.partitionHandOvers };
    process.stdout.write(`stats ${JSON.stringify(stats)}\n`);
    await db.destroy();
    process.exit(0);
  })();
});
await host.start();
process.stdout.write('started\n');
