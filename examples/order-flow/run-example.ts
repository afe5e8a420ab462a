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
import { generateLoad, type Ledger, type LoadPlan, orderScript } from './load-generator.js';
import type { ProgressDisplay, ProgressState } from './progress-display.js';
import { installTracing, type TraceLine, traceOf } from './tracing.js';

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
  /** One scrape of the app's own `GET /metrics` after the run. */
  readonly metrics: MetricsScrape;
  /** One order's trace, from its HTTP request to the handlers, depth first. */
  readonly trace: { readonly orderId: string; readonly spans: readonly TraceLine[] };
  readonly warnings: readonly string[];
  readonly checks: readonly Check[];
}

/** What `GET /metrics` answered. */
export interface MetricsScrape {
  /** The exposition text, whole. */
  readonly text: string;
  /** Metric families: outboxkit's and the rest (the process's default metrics). */
  readonly families: { readonly outboxkit: number; readonly other: number };
  /** Sample lines of a few outboxkit metrics, as served. */
  readonly shown: readonly string[];
  /** `outboxkit_relay_published_total`, or undefined when absent. */
  readonly published: number | undefined;
}

/** The metrics the summary shows. */
const SHOWN_METRICS = [
  'outboxkit_relay_published_total',
  'outboxkit_relay_publish_seconds_count',
  'outboxkit_consumer_handled_total',
  'outboxkit_consumer_duplicates_total',
  'outboxkit_consumer_retried_total',
  'outboxkit_consumer_dead_lettered_total',
  'outboxkit_outbox_pending_messages',
  'outboxkit_outbox_oldest_pending_age_seconds',
];

const INVENTORY = 'inventory.orders';
/**
 * The first spans of an order's trace, each the parent of the next: the HTTP request, its
 * transaction, the relay's publish, the inventory's process span and its handler's span.
 */
const TRACE_CHAIN = ['SERVER', 'INTERNAL', 'PRODUCER', 'CONSUMER', 'INTERNAL'] as const;
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
  // Spans are kept in memory, to print one order's trace at the end.
  const tracing = installTracing();
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
        ...(t.retryDueQueue ? [t.retryDueQueue.name] : []),
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
    // The relay counts a message published once its confirm is in, which can come after the
    // handlers are done with it: scrape again until the counter has stopped moving (a moment).
    const metricsUrl = `${await app.getUrl()}/metrics`;
    let relayed = outbox.relay?.stats().published ?? 0;
    let metrics = await scrapeMetrics(metricsUrl);
    for (const until = Date.now() + 2000; metrics.published !== relayed && Date.now() < until; ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      relayed = outbox.relay?.stats().published ?? 0;
      metrics = await scrapeMetrics(metricsUrl);
    }
    // An order that is only placed, reserved and confirmed, after the first few (which also
    // pay for opening connections): the plainest trace.
    const traced = Array.from({ length: ledger.placed }, (_, i) => orderScript(i)).find(
      (o, i) => i >= 10 && o.sku.startsWith('widget') && !o.cancel && !o.announce,
    );
    const orderId = traced?.id ?? 'none';
    const summary = await summarize(db, ledger, {
      relayed,
      metrics,
      trace: { orderId, spans: traceOf(tracing.exporter.getFinishedSpans(), 'order.id', orderId) },
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
    try {
      await app?.close();
      if (!options.keep) await removeAll(config, declared);
    } finally {
      await tracing.stop();
    }
  }
}

async function scrapeMetrics(url: string): Promise<MetricsScrape> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  const text = await response.text();
  const families = [...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!);
  const samples = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
  const published = /^outboxkit_relay_published_total (\S+)$/m.exec(text)?.[1];
  return {
    text,
    families: {
      outboxkit: families.filter((f) => f.startsWith('outboxkit_')).length,
      other: families.filter((f) => !f.startsWith('outboxkit_')).length,
    },
    // A consumer's series at 0 (no dead letters of the confirmations) say little here.
    shown: samples.filter(
      (line) => SHOWN_METRICS.includes(/^[\w:]+/.exec(line)![0]) && !/\{.*\} 0$/.test(line),
    ),
    published: published === undefined ? undefined : Number(published),
  };
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
    metrics: MetricsScrape;
    trace: ExampleSummary['trace'];
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
    check(
      'metrics endpoint',
      seen.metrics.published === seen.relayed,
      `outboxkit_relay_published_total ${seen.metrics.published} in GET /metrics, ${seen.relayed} relayed`,
    ),
    check(
      'one trace from request to handlers',
      TRACE_CHAIN.every(
        (kind, i) => seen.trace.spans[i]?.kind === kind && seen.trace.spans[i]?.depth === i,
      ),
      `${seen.trace.spans.length} spans in the trace of ${seen.trace.orderId}`,
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
    metrics: seen.metrics,
    trace: seen.trace,
    warnings: seen.warnings,
    checks,
  };
}
