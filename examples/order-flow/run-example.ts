import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import * as amqp from 'amqplib';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import pg from 'pg';
import type { ConsumerStats } from '../../src/consumer/consumer-stats.js';
import { OutboxService } from '../../src/nestjs/index.js';
import { AppModule } from './app.module.js';
import { type ExampleDatabase, exampleSchemaSql, KYSELY } from './database.js';
import type { ExampleConfig } from './example-config.js';
import { ExampleLogger } from './example-logger.js';
import { LatencyRecorder } from './latency-recorder.js';
import { generateLoad, type Ledger, type LoadPlan } from './load-generator.js';
import type { ProgressDisplay, ProgressState } from './progress-display.js';

/** How one run goes. */
export interface RunOptions extends LoadPlan {
  /** Where progress goes; none by default. */
  readonly progress?: ProgressDisplay;
  /** How long to wait, after the last order, for every message to be handled. Default 20 s. */
  readonly drainTimeoutMs?: number;
  /** Keep the schema, queues and exchanges afterwards, to look at them. Default false. */
  readonly keep?: boolean;
}

/** One invariant the run checks, and whether it held. */
export interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** What happened, counted from both sides: the load generator's ledger and the database. */
export interface ExampleSummary {
  readonly ledger: Ledger;
  readonly ordersInDatabase: number;
  readonly relayed: number;
  readonly handled: { readonly inventory: number; readonly confirmations: number };
  readonly duplicates: number;
  readonly retries: number;
  readonly deadLetters: {
    readonly counted: number;
    readonly inQueue: number;
    readonly queue: string;
  };
  readonly reservations: number;
  readonly doubleEffects: number;
  readonly releases: number;
  readonly orderingViolations: number;
  readonly confirmations: number;
  readonly latencyMs: { readonly p50?: number; readonly p99?: number; readonly count: number };
  readonly drained: boolean;
  readonly warnings: readonly string[];
  readonly checks: readonly Check[];
}

const INVENTORY = 'inventory.orders';
const CONFIRMATIONS = 'orders.stock-reserved';

/**
 * Starts the example application on an ephemeral port, sends the orders over HTTP, waits for
 * every message to be handled, counts what happened, then shuts the application down (as
 * SIGTERM would) and removes what the run created.
 */
export async function runExample(
  config: ExampleConfig,
  options: RunOptions,
): Promise<ExampleSummary> {
  await createTables(config);
  const logger = new ExampleLogger();
  let app: INestApplication | undefined;
  let declared: { queues: string[]; exchanges: string[] } = { queues: [], exchanges: [] };
  try {
    app = await NestFactory.create(AppModule.register(config, logger), { logger });
    app.enableShutdownHooks();
    await app.listen(0, '127.0.0.1');
    const outbox = app.get(OutboxService);
    declared = {
      queues: outbox.topologies.flatMap((t) => [
        t.queue.name,
        t.deadLetterQueue.name,
        ...t.delayQueues.map((q) => q.name),
      ]),
      exchanges: [`${config.prefix}orders`, `${config.prefix}inventory`],
    };
    const ledger: Ledger = { placed: 0, discontinued: 0, gizmos: 0, cancelled: 0, announced: 0 };
    const stats = (name: string): ConsumerStats =>
      outbox.consumerHost!.stats(`${config.prefix}${name}`);
    const state = (): ProgressState => ({
      placed: ledger.placed,
      total: options.orders,
      relayed: outbox.relay?.stats().published ?? 0,
      handled: stats(INVENTORY).handled + stats(CONFIRMATIONS).handled,
      retries: stats(INVENTORY).retried,
      deadLetters: stats(INVENTORY).deadLettered,
    });

    const ticker = setInterval(() => options.progress?.update(state(), 'sending'), 100);
    try {
      await generateLoad(await app.getUrl(), options, ledger);
    } finally {
      clearInterval(ticker);
    }

    // Every open order is reserved and confirmed once, every cancellation released once, every
    // discontinued order dead-lettered, every second announcement suppressed.
    const open = ledger.placed - ledger.discontinued;
    const done = () =>
      stats(INVENTORY).handled === open + ledger.cancelled &&
      stats(INVENTORY).deadLettered === ledger.discontinued &&
      stats(INVENTORY).duplicates === ledger.announced &&
      stats(CONFIRMATIONS).handled === open;
    const deadline = Date.now() + (options.drainTimeoutMs ?? 20_000);
    while (!done() && Date.now() < deadline) {
      options.progress?.update(state(), 'draining');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    options.progress?.finish(state(), done() ? 'drained' : 'gave up waiting');

    const db = app.get<Kysely<ExampleDatabase>>(KYSELY);
    const latency = app.get(LatencyRecorder);
    const dlq = outbox.topologies.find((t) => t.queue.name === `${config.prefix}${INVENTORY}`)!
      .deadLetterQueue.name;
    const summary = await summarize(db, ledger, {
      relayed: outbox.relay?.stats().published ?? 0,
      inventory: stats(INVENTORY),
      confirmations: stats(CONFIRMATIONS),
      deadLettersInQueue: (await outbox.deadLetterDepths()).get(dlq) ?? 0,
      dlq,
      latency,
      drained: done(),
      warnings: logger.warnings,
    });
    return summary;
  } finally {
    await app?.close();
    if (!options.keep) await removeAll(config, declared);
  }
}

async function createTables(config: ExampleConfig): Promise<void> {
  const client = new pg.Client({ connectionString: config.databaseUrl });
  await client.connect();
  try {
    await client.query(exampleSchemaSql(config.schema));
  } finally {
    await client.end();
  }
}

async function removeAll(
  config: ExampleConfig,
  declared: { queues: string[]; exchanges: string[] },
): Promise<void> {
  const connection = await amqp.connect(config.amqpUrl);
  connection.on('error', () => {});
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    for (const queue of declared.queues) await channel.deleteQueue(queue).catch(() => {});
    for (const exchange of declared.exchanges)
      await channel.deleteExchange(exchange).catch(() => {});
  } finally {
    await connection.close().catch(() => {});
  }
  const client = new pg.Client({ connectionString: config.databaseUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${config.schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

async function summarize(
  db: Kysely<ExampleDatabase>,
  ledger: Ledger,
  seen: {
    relayed: number;
    inventory: ConsumerStats;
    confirmations: ConsumerStats;
    deadLettersInQueue: number;
    dlq: string;
    latency: LatencyRecorder;
    drained: boolean;
    warnings: readonly string[];
  },
): Promise<ExampleSummary> {
  const count = async (query: Promise<{ n: string | number | bigint } | undefined>) =>
    Number((await query)?.n ?? 0);
  const ordersInDatabase = await count(
    db
      .selectFrom('orders')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst(),
  );
  const reservations = await count(
    db
      .selectFrom('reservations')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst(),
  );
  const confirmations = await count(
    db
      .selectFrom('confirmations')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst(),
  );
  const doubles = await sql<{ n: string }>`
    SELECT count(*) AS n FROM (
      SELECT order_id FROM reservations GROUP BY order_id HAVING count(*) > 1
      UNION ALL
      SELECT order_id FROM confirmations GROUP BY order_id HAVING count(*) > 1) d`.execute(db);
  const logged = async (event: string) =>
    count(
      db
        .selectFrom('inventory_log')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('event', '=', event)
        .executeTakeFirst(),
    );
  const releases = await logged('released');
  const orderingViolations = await logged('release-before-reservation');
  const doubleEffects = Number(doubles.rows[0]?.n ?? 0);

  const open = ledger.placed - ledger.discontinued;
  const check = (name: string, ok: boolean, detail: string): Check => ({ name, ok, detail });
  const checks = [
    check('drained in time', seen.drained, 'every expected message was handled'),
    check(
      'orders written',
      ordersInDatabase === ledger.placed,
      `${ordersInDatabase} of ${ledger.placed}`,
    ),
    check('one reservation per open order', reservations === open, `${reservations} of ${open}`),
    check('one confirmation per open order', confirmations === open, `${confirmations} of ${open}`),
    check('no double effect', doubleEffects === 0, `${doubleEffects} orders affected twice`),
    check(
      'cancellations released',
      releases === ledger.cancelled,
      `${releases} of ${ledger.cancelled}`,
    ),
    check('per-order ordering', orderingViolations === 0, `${orderingViolations} overtaken`),
    check(
      'dead letters',
      seen.deadLettersInQueue === ledger.discontinued,
      `${seen.deadLettersInQueue} in the queue, ${ledger.discontinued} expected`,
    ),
    check(
      'duplicates suppressed',
      seen.inventory.duplicates === ledger.announced,
      `${seen.inventory.duplicates} of ${ledger.announced}`,
    ),
  ];
  return {
    ledger: { ...ledger },
    ordersInDatabase,
    relayed: seen.relayed,
    handled: { inventory: seen.inventory.handled, confirmations: seen.confirmations.handled },
    duplicates: seen.inventory.duplicates + seen.confirmations.duplicates,
    retries: seen.inventory.retried,
    deadLetters: {
      counted: seen.inventory.deadLettered,
      inQueue: seen.deadLettersInQueue,
      queue: seen.dlq,
    },
    reservations,
    doubleEffects,
    releases,
    orderingViolations,
    confirmations,
    latencyMs: {
      p50: seen.latency.percentile(50),
      p99: seen.latency.percentile(99),
      count: seen.latency.count,
    },
    drained: seen.drained,
    warnings: seen.warnings,
    checks,
  };
}
