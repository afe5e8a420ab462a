import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { testRelay } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('end to end: writer, relay, idempotent consumers', () => {
  let f: ConsumerFixture;
  let consumerPool: pg.Pool;
  // biome-ignore lint/suspicious/noExplicitAny: test tables
  let consumerDb: Kysely<any>;
  let relay: OutboxRelay | undefined;
  before(async () => {
    f = await ConsumerFixture.open('ce2e');
    await f.t.pool.query(
      `CREATE TABLE "${f.t.schema}".orders (id text PRIMARY KEY, total int NOT NULL)`,
    );
    // Consumers get a pool of their own, as they would in a service beside the relay.
    consumerPool = new pg.Pool({ connectionString: DATABASE_URL, max: 16 });
    consumerPool.on('error', () => {});
    consumerPool.on('connect', (client) => client.on('error', () => {}));
    consumerDb = new Kysely({ dialect: new PostgresDialect({ pool: consumerPool }) });
  });
  after(async () => {
    await relay?.stop();
    await f.stopHosts();
    await consumerDb.destroy();
    await f.close();
  });

  it('10k messages written in business transactions: every effect once', async () => {
    const total = 10_000;
    const perTransaction = 25;
    const writers = 4;
    const recordEffect = async (payload: { orderId: string }, ctx: ConsumeContext) => {
      await ctx.trx
        .insertInto(`${f.t.schema}.effects`)
        .values({ consumer: ctx.consumer, key: payload.orderId, attempt: ctx.attempt })
        .execute();
    };
    // Batched, so that 10k effects fit the time of a test file on a busy machine; the
    // transaction-per-message path has its own tests.
    const consumer = f.definition('e2e', recordEffect, {
      routingKeys: ['order.placed'],
      concurrency: 4,
      batchSize: 20,
    });
    // Consumers first: they declare the exchange the relay publishes to.
    const host = await f.host([consumer], { db: consumerDb });
    relay = testRelay(f.t, { batchSize: 200 });
    await relay.start();

    const writer = new OutboxWriter({ schema: f.t.schema });
    const exchange = f.name('events');
    const writeSlice = async (w: number) => {
      for (let first = w * perTransaction; first < total; first += writers * perTransaction) {
        await f.t.db.transaction().execute(async (trx) => {
          const ids = Array.from({ length: perTransaction }, (_, i) => `o${first + i}`);
          await trx
            .insertInto(`${f.t.schema}.orders`)
            .values(ids.map((id, i) => ({ id, total: i })))
            .execute();
          await writer.addMany(
            trx,
            ids.map((id) => ({ exchange, routingKey: 'order.placed', payload: { orderId: id } })),
          );
        });
      }
    };
    await Promise.all(Array.from({ length: writers }, (_, w) => writeSlice(w)));
    assert.equal(await f.t.count('orders'), total);

    await waitFor(
      'every message handled',
      () => host.stats(consumer.name).handled === total,
      60_000,
      50,
    ).catch((error: Error) => {
      // Say how far everything got, so a stall can be told from slowness.
      const progress = {
        relay: relay?.stats(),
        consumer: host.stats(consumer.name),
      };
      throw new Error(`${error.message}: ${JSON.stringify(progress)}`, { cause: error });
    });
    const { rows } = await f.t.pool.query(
      `SELECT consumer, count(*)::int AS effects, count(DISTINCT key)::int AS keys
       FROM "${f.t.schema}".effects GROUP BY consumer ORDER BY consumer`,
    );
    assert.deepEqual(rows, [{ consumer: consumer.name, effects: total, keys: total }]);
    assert.equal(await f.t.count('outbox'), 0);
    assert.equal(relay.stats().published, total);
    assert.equal(await f.depth(consumer.name), 0);
    const stats = host.stats(consumer.name);
    assert.equal(stats.deadLettered + stats.failures, 0, 'no failures');
  });
});
