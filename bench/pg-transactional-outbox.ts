/**
 * Benchmark 3, second half: the relay against the npm package pg-transactional-outbox (0.5.7),
 * its polling listener, publishing to the same kind of queue with publisher confirms. Its
 * logical replication listener is not measured yet (see docs/benchmarks.md).
 *
 * Each listener run drains a pre-filled outbox of its own table and marks rows processed; the
 * handler publishes the message and waits for its confirm. "Documented settings" are the
 * package defaults (batch 5, poll every 500 ms, messages stored with their defaults);
 * the tuned settings mark messages `parallel` and raise the batch size and poll rate.
 *
 *   node dist/bench/pg-transactional-outbox.js [--quick] [--json FILE] [--runs 3]
 *     [--messages 500] [--timeout-seconds 90] [--default-messages 500] [--relay-messages 20000]
 */
import type { ConfirmChannel } from 'amqplib';
import type pg from 'pg';
import {
  DatabaseSetup,
  getDisabledLogger,
  initializePollingMessageListener,
  type StoredTransactionalMessage,
} from 'pg-transactional-outbox';
import { timeRelayDrain } from './relay-drain.js';
import {
  type BenchArgs,
  type BenchReport,
  intFlag,
  isMain,
  type Measurement,
  measurement,
  progress,
  runStandalone,
  waitForQuiet,
} from './support/bench-cli.js';
import {
  amqpConnect,
  BenchQueue,
  benchSchema,
  DATABASE_URL,
  newPool,
  prefillOutbox,
  serverVersions,
  sleep,
} from './support/bench-services.js';

interface PollingSettings {
  readonly name: string;
  readonly parallel: boolean;
  readonly batchSize?: number;
  readonly pollingIntervalMs?: number;
  /**
   * Skip its default batch-size ramp (one message per poll for the first `batchSize` polls,
   * against poison messages at start-up) with a `batchSizeStrategy` of our own.
   */
  readonly noRampUp?: boolean;
}

const SETTINGS: PollingSettings[] = [
  { name: 'documented settings (batch 5, poll 500 ms, sequential messages)', parallel: false },
  { name: 'parallel messages, batch 5, poll 500 ms', parallel: true },
  {
    name: 'parallel messages, batch 100, poll 10 ms',
    parallel: true,
    batchSize: 100,
    pollingIntervalMs: 10,
  },
  {
    name: 'parallel messages, batch 500, poll 10 ms',
    parallel: true,
    batchSize: 500,
    pollingIntervalMs: 10,
  },
  {
    name: 'parallel messages, batch 500, poll 10 ms, no batch-size ramp',
    parallel: true,
    batchSize: 500,
    pollingIntervalMs: 10,
    noRampUp: true,
  },
];

/** Settings that poll every 500 ms get few messages, or one run would take minutes. */
function slow(settings: PollingSettings): boolean {
  return settings.pollingIntervalMs === undefined;
}

async function createTable(pool: pg.Pool, schema: string): Promise<void> {
  const config = {
    outboxOrInbox: 'outbox' as const,
    database: 'test',
    schema,
    table: 'ptx_outbox',
    listenerRole: 'postgres',
    nextMessagesName: 'next_outbox_messages',
  };
  await pool.query(DatabaseSetup.dropAndCreateTable(config));
  await pool.query(DatabaseSetup.createPollingFunction(config));
  await pool.query(DatabaseSetup.setupPollingIndexes(config));
}

/** Rows as `initializeMessageStorage` writes them: one aggregate (segment) per message. */
async function prefill(
  pool: pg.Pool,
  table: string,
  count: number,
  parallel: boolean,
): Promise<void> {
  await pool.query(`TRUNCATE ${table}`);
  await pool.query(
    `INSERT INTO ${table} (id, aggregate_type, aggregate_id, message_type, segment, concurrency, payload)
     SELECT gen_random_uuid(), 'order', i::text, 'order_placed', i::text, $2,
            json_build_object('id', i, 'pad', repeat('x', 1000))::jsonb
     FROM generate_series(1, $1::int) AS i`,
    [count, parallel ? 'parallel' : 'sequential'],
  );
  await pool.query(`VACUUM ANALYZE ${table}`);
}

interface ListenerResult {
  readonly ms: number;
  readonly processed: number;
  readonly errors: number;
  readonly firstError: string | undefined;
}

async function drainWithListener(
  pool: pg.Pool,
  schema: string,
  channel: ConfirmChannel,
  queue: BenchQueue,
  count: number,
  settings: PollingSettings,
  timeoutMs: number,
): Promise<ListenerResult> {
  let errors = 0;
  let firstError: string | undefined;
  const table = `"${schema}".ptx_outbox`;
  const [shutdown] = initializePollingMessageListener(
    {
      outboxOrInbox: 'outbox',
      dbListenerConfig: { connectionString: DATABASE_URL },
      settings: {
        dbSchema: schema,
        dbTable: 'ptx_outbox',
        nextMessagesFunctionName: 'next_outbox_messages',
        nextMessagesFunctionSchema: schema,
        enableMaxAttemptsProtection: false,
        enablePoisonousMessageProtection: false,
        messageCleanupIntervalInMs: 0,
        ...(settings.batchSize !== undefined && { nextMessagesBatchSize: settings.batchSize }),
        ...(settings.pollingIntervalMs !== undefined && {
          nextMessagesPollingIntervalInMs: settings.pollingIntervalMs,
        }),
      },
    },
    {
      handle: (message: StoredTransactionalMessage) =>
        new Promise<void>((resolve, reject) => {
          channel.publish(
            queue.exchange,
            queue.routingKey,
            Buffer.from(JSON.stringify(message.payload)),
            {
              persistent: true,
              mandatory: true,
              messageId: message.id,
              contentType: 'application/json',
            },
            (error) => (error ? reject(error) : resolve()),
          );
        }),
      handleError: async (error) => {
        errors += 1;
        firstError ??= error.message;
      },
    },
    getDisabledLogger(),
    settings.noRampUp && settings.batchSize !== undefined
      ? { batchSizeStrategy: () => Promise.resolve(settings.batchSize!) }
      : {},
  );
  const start = performance.now();
  try {
    // Under load its row locks (nextMessagesLockInMs) can expire mid-batch and rows be handled
    // again; give up after `timeoutMs` and report how far it got.
    let processed = 0;
    while (processed < count && performance.now() - start < timeoutMs) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${table} WHERE processed_at IS NOT NULL`,
      );
      processed = rows[0]!.n;
      if (processed < count) await sleep(20);
    }
    return { ms: performance.now() - start, processed, errors, firstError };
  } finally {
    await shutdown();
  }
}

export async function pgTransactionalOutbox(args: BenchArgs): Promise<BenchReport> {
  const messages = intFlag(args, 'messages', 50, 500);
  const defaultMessages = intFlag(args, 'default-messages', 5, 150);
  const relayMessages = intFlag(args, 'relay-messages', 500, 20_000);
  const pool = newPool(4);
  const connection = await amqpConnect();
  const versions = await serverVersions(pool, connection);
  const schema = await benchSchema(pool, 'bench_ptx');
  await createTable(pool, schema.name);
  const queue = await BenchQueue.open(connection, 'classic');
  const channel = await connection.createConfirmChannel();
  channel.on('error', () => {});
  const timeoutMs = intFlag(args, 'timeout-seconds', 5, 90) * 1000;
  const incomplete = new Set<string>();
  const duplicates: number[] = [];
  const rates = SETTINGS.map(() => [] as number[]);
  const relay: number[] = [];
  const ratios = SETTINGS.map(() => [] as number[]);
  try {
    for (let run = 1; run <= args.runs; run += 1) {
      await prefillOutbox(pool, schema.outbox, relayMessages, queue.exchange, queue.routingKey);
      await queue.reset();
      await waitForQuiet();
      const relayRate =
        (relayMessages /
          (await timeRelayDrain(schema.name, relayMessages, { batchSize: 500, concurrency: 4 }))) *
        1000;
      await queue.expectDepth(relayMessages);
      relay.push(relayRate);
      progress(`run ${run}: outboxkit relay ${Math.round(relayRate)} msgs/s`);
      for (const [i, settings] of SETTINGS.entries()) {
        const n = slow(settings) ? defaultMessages : messages;
        await prefill(pool, `"${schema.name}".ptx_outbox`, n, settings.parallel);
        await queue.reset();
        await waitForQuiet();
        const result = await drainWithListener(
          pool,
          schema.name,
          channel,
          queue,
          n,
          settings,
          timeoutMs,
        );
        const rate = (result.processed / result.ms) * 1000;
        await sleep(500);
        const published = await queue.depth();
        rates[i]!.push(rate);
        ratios[i]!.push(relayRate / rate);
        if (result.processed < n) incomplete.add(settings.name);
        duplicates[i] = (duplicates[i] ?? 0) + Math.max(0, published - result.processed);
        progress(
          `run ${run}: ${settings.name}: ${Math.round(rate)} msgs/s (${result.processed}/${n} processed, ${published} in the queue, ${result.errors} handler errors${result.firstError ? `: ${result.firstError}` : ''})`,
        );
      }
    }
  } finally {
    await channel.close().catch(() => {});
    await queue.close();
    await schema.drop();
    await connection.close().catch(() => {});
    await pool.end();
  }
  const rows: Measurement[] = [
    measurement(`outboxkit relay, batch 500, 4 lanes (${relayMessages} messages)`, 'msgs/s', relay),
    ...SETTINGS.map((s, i) =>
      measurement(
        `pg-transactional-outbox polling listener, ${s.name} (${slow(s) ? defaultMessages : messages} messages${incomplete.has(s.name) ? ', not all processed within the time limit' : ''}${duplicates[i] ? `, ${duplicates[i]} published more than once` : ''})`,
        'msgs/s',
        rates[i]!,
        { ratios: ratios[i]! },
      ),
    ),
  ];
  return {
    benchmark: 'pg-transactional-outbox',
    title: 'Relay against pg-transactional-outbox 0.5.7 (polling listener)',
    settings: { messages, defaultMessages, relayMessages, queue: 'classic durable', ...versions },
    sections: [{ title: 'classic durable queue, 1 KiB JSON payloads, publisher confirms', rows }],
    notes: [
      'ratio here: outboxkit relay rate / that listener rate, same run (higher is better for outboxkit); targets: at least 15 against the polling listener',
      'one aggregate (segment) per message; the listener marks rows processed and keeps them',
    ],
  };
}

if (isMain(import.meta.url)) await runStandalone(pgTransactionalOutbox);
