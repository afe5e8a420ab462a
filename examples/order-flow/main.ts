// `npm run example`: the order and inventory services in one Nest app, against the local
// Postgres and RabbitMQ (DATABASE_URL and AMQP_URL to use others). EXAMPLE_ORDERS and
// EXAMPLE_RATE change the load, EXAMPLE_KEEP=1 keeps the schema and queues afterwards. Exits 0
// when every check of the summary holds.
import { redactUrl } from '../../src/util/logger.js';
import { exampleConfig } from './example-config.js';
import { formatSummary } from './print-summary.js';
import { ProgressDisplay } from './progress-display.js';
import { runExample } from './run-example.js';

const config = exampleConfig();
const orders = Number(process.env.EXAMPLE_ORDERS ?? 200);
const rate = Number(process.env.EXAMPLE_RATE ?? 50);
process.stdout.write(
  'outboxkit example: an order service and an inventory service in one Nest app\n' +
    `  Postgres  ${redactUrl(config.databaseUrl)}  (schema ${config.schema})\n` +
    `  RabbitMQ  ${redactUrl(config.amqpUrl)}  (names prefixed ${config.prefix})\n` +
    `  sending ${orders} orders over HTTP at about ${rate} per second\n\n`,
);

try {
  const summary = await runExample(config, {
    orders,
    concurrency: 8,
    ratePerSecond: rate,
    progress: new ProgressDisplay(process.stdout),
    keep: process.env.EXAMPLE_KEEP === '1',
  });
  process.stdout.write(formatSummary(summary));
  process.exitCode = summary.checks.every((c) => c.ok) ? 0 : 1;
} catch (error) {
  process.stderr.write(
    `\nThe example failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n` +
      'Are Postgres and RabbitMQ running? `docker compose up -d --wait` starts both.\n',
  );
  process.exitCode = 1;
}
