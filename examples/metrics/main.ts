// Runs a relay and serves its metrics on http://127.0.0.1:9464/metrics until Ctrl-C.
//   DATABASE_URL=postgres://... AMQP_URL=amqp://... node dist/examples/metrics/main.js
import pg from 'pg';
import { OutboxRelay } from '../../src/index.js';
import { serveMetrics } from './metrics-server.js';

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const amqpUrl = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const schema = process.env.OUTBOXKIT_SCHEMA ?? 'outboxkit';

// Above the 10 connections a relay holds at most at its defaults, with room for the metrics.
const pool = new pg.Pool({ connectionString: databaseUrl, max: 12 });
const relay = new OutboxRelay({ pool, amqpUrl, schema });
await relay.start();
const server = await serveMetrics({ relay, pool, schema }, Number(process.env.PORT ?? 9464));
console.error(`metrics on ${server.url}`);

process.once('SIGINT', async () => {
  await server.close();
  await relay.stop();
  await pool.end();
});
