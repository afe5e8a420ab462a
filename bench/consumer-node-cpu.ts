/**
 * The idempotent consumer's own Node CPU per message, without Postgres or RabbitMQ: the
 * dispatcher, the processor, the claim transaction and a handler that inserts one row through
 * `ctx.trx`, over a Kysely whose connections answer every statement on the next turn of the
 * event loop (the claim with a pid). Readings vary less than the full benchmark's on a busy
 * machine, since no other process's CPU is counted. Not part of `run-all`.
 *
 *   node dist/bench/consumer-node-cpu.js [--messages 50000] [--rounds 5] [--in-flight 16]
 */
import type { ConsumeMessage } from 'amqplib';
import {
  type DatabaseConnection,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
} from 'kysely';
import type { ConsumerChannelHandle } from '../src/consumer/consumer-channel.js';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { emptyConsumerStats } from '../src/consumer/consumer-stats.js';
import { DatabaseRetryLoop } from '../src/consumer/database-retry-loop.js';
import { DeliveryDispatcher } from '../src/consumer/delivery-dispatcher.js';
import { DeliveryProcessor } from '../src/consumer/delivery-processor.js';
import type { FailureRouter } from '../src/consumer/failure-router.js';
import { processedQueries } from '../src/consumer/processed-queries.js';
import { type ReceivedDelivery, receivedDelivery } from '../src/consumer/received-delivery.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { silentLogger } from '../src/util/logger.js';
import { intFlag, median, parseBenchArgs } from './support/bench-cli.js';
import { payload } from './support/bench-services.js';

const args = parseBenchArgs();
const messages = intFlag(args, 'messages', 1000, 50_000);
const rounds = intFlag(args, 'rounds', 1, 5);
const inFlight = intFlag(args, 'in-flight', 16, 16);

const CLAIMED: QueryResult<unknown> = { rows: [{ pid: 4242 }] };
const NOTHING: QueryResult<unknown> = { rows: [], numAffectedRows: 1n };

/** Answers every statement on the next turn of the event loop, as a socket would. */
class InstantConnection implements DatabaseConnection {
  executeQuery<R>(compiled: { readonly sql: string }): Promise<QueryResult<R>> {
    const result = compiled.sql.includes('pg_backend_pid') ? CLAIMED : NOTHING;
    return new Promise((resolve) => setImmediate(() => resolve(result as QueryResult<R>)));
  }
  // biome-ignore lint/correctness/useYield: never streamed here
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('not streamed');
  }
}

const free: InstantConnection[] = [];
const driver: Driver = {
  init: async () => {},
  acquireConnection: async () => free.pop() ?? new InstantConnection(),
  beginTransaction: async (c) => {
    await c.executeQuery({ sql: 'begin', parameters: [], query: undefined } as never);
  },
  commitTransaction: async (c) => {
    await c.executeQuery({ sql: 'commit', parameters: [], query: undefined } as never);
  },
  rollbackTransaction: async (c) => {
    await c.executeQuery({ sql: 'rollback', parameters: [], query: undefined } as never);
  },
  releaseConnection: async (c) => {
    free.push(c as InstantConnection);
  },
  destroy: async () => {},
};
// biome-ignore lint/suspicious/noExplicitAny: the handler's table only
const db = new Kysely<any>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => driver,
    createQueryCompiler: () => new PostgresQueryCompiler(),
    createIntrospector: (k) => new PostgresIntrospector(k),
  },
});

const definition: ConsumerDefinition<{ id: number }> = {
  name: 'node-cpu',
  exchange: 'node-cpu',
  routingKeys: ['k'],
  concurrency: inFlight,
  batchSize: 1,
  async handler(body, ctx: ConsumeContext) {
    await ctx.trx
      .insertInto('bench.effects')
      .values({ key: ctx.businessKey, amount: body.id % 100 })
      .execute();
  },
};
const consumer = resolveConsumer(definition, { brokerConsumerTimeoutMs: 1_800_000 });
const stats = emptyConsumerStats();
const stopping = new AbortController().signal;
const transactions = new DatabaseRetryLoop({
  db,
  queries: processedQueries('bench'),
  consumer,
  logger: silentLogger,
  stats,
  reconnectBackoff: { initialMs: 100, maxMs: 1000, factor: 2 },
  databaseRetryLimitMs: 60_000,
  stopping,
});
const processor = new DeliveryProcessor({
  consumer,
  logger: silentLogger,
  stats,
  transactions,
  // Only the parse step asks it anything on the success path.
  failures: { refusedRetries: () => 0 } as unknown as FailureRouter,
  databaseRetryLimitMs: 60_000,
  handBack: () => {},
});
let acked = 0;
let onAck = () => {};
const handle = {
  open: true,
  channel: {
    ack: () => {
      acked += 1;
      onAck();
    },
  },
} as unknown as ConsumerChannelHandle;

function message(i: number): ConsumeMessage {
  return {
    content: payload(i),
    fields: {
      deliveryTag: i + 1,
      redelivered: false,
      exchange: 'node-cpu',
      routingKey: 'k',
      consumerTags: ['ctag'],
    },
    properties: {
      contentType: 'application/json',
      messageId: `m-${i}`,
      headers: {},
      deliveryMode: 2,
    },
  } as unknown as ConsumeMessage;
}

async function round(offset: number): Promise<number> {
  const dispatcher = new DeliveryDispatcher<ReceivedDelivery>({
    concurrency: consumer.concurrency,
    batchSize: consumer.batchSize,
    ordered: false,
    run: (deliveries) => processor.run(deliveries),
    onError: (error) => {
      throw error;
    },
  });
  acked = 0;
  const before = process.cpuUsage();
  // As the broker does: a prefetch window of deliveries, topped up as they are acked.
  let next = 0;
  const prefetch = 2 * inFlight;
  await new Promise<void>((resolve) => {
    onAck = () => {
      while (next < messages && next - acked < prefetch) {
        // Made as they arrive, as amqplib does: a list made up front would keep them all alive.
        dispatcher.push(receivedDelivery(message(offset + next), handle, false));
        next += 1;
      }
      if (acked === messages) resolve();
    };
    onAck();
  });
  const used = process.cpuUsage(before);
  return (used.user + used.system) / messages;
}

const results: number[] = [];
for (let r = 0; r < rounds; r += 1) results.push(await round(r * messages));
console.log(
  `Node CPU µs/msg: median ${median(results).toFixed(1)} (${results.map((x) => x.toFixed(1)).join(', ')}); handled ${stats.handled}`,
);
