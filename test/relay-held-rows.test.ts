import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const KEYS = 200;
const HELD_PER_KEY = 100;
const HELD = KEYS * HELD_PER_KEY;

/**
 * Rows due but held behind the head of their key, here a message delayed an hour (a reminder
 * keyed by its order): every claim from the outbox's head reads them all again, and claims that
 * found nothing else ran from the head one after another. A probe's relay with 100,000 such rows
 * spent most of a core of Postgres and published other messages 3 s late.
 */
describe('a relay over rows held behind delayed heads of their keys', () => {
  let t: TestDatabase;
  let broker: TestBroker;

  before(async () => {
    t = await testDatabase('held');
    broker = await TestBroker.open();
    const outbox = `"${t.schema}".outbox`;
    await t.pool.query(
      `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type, ordering_key, available_at)
       SELECT 'head-' || k, 'held', 'k', '\\x7b7d', 'application/json', 'key-' || k, now() + interval '1 hour'
       FROM generate_series(1, ${KEYS}) k`,
    );
    await t.pool.query(
      `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type, ordering_key, available_at)
       SELECT 'held-' || k || '-' || i, 'held', 'k', '\\x7b7d', 'application/json', 'key-' || k, now() - interval '1 minute'
       FROM generate_series(1, ${HELD_PER_KEY}) i, generate_series(1, ${KEYS}) k`,
    );
    await t.pool.query(`ANALYZE ${outbox}`);
  });

  after(async () => {
    await broker.close();
    await t.close();
  });

  /** Index entries of the claim's index read so far, as Postgres's statistics have them. */
  const claimIndexReads = async () => {
    // A connection of its own: the snapshot of statistics lasts for a transaction.
    const client = new pg.Client({ connectionString: DATABASE_URL });
    await client.connect();
    try {
      const { rows } = await client.query(
        `SELECT idx_tup_read::int8::text AS n FROM pg_stat_user_indexes
         WHERE schemaname = $1 AND indexrelname = 'outbox_available_at_idx'`,
        [t.schema],
      );
      return Number(rows[0].n);
    } finally {
      await client.end();
    }
  };

  it('publishes other messages at once and reads the held rows again only now and then', async () => {
    const exchange = await broker.exchange('other');
    const queue = await broker.queue('other', exchange);
    const relay = new OutboxRelay({
      databaseUrl: DATABASE_URL,
      amqpUrl: AMQP_URL,
      schema: t.schema,
    });
    const writer = new OutboxWriter({ schema: t.schema });
    const readsBefore = await claimIndexReads();
    const latencies: number[] = [];
    await relay.start();
    try {
      await waitFor('the relay to connect', () => relay.isConnected);
      // A window of time is what is measured here: the claims an idle relay runs meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      for (let i = 0; i < 20; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        await t.db
          .transaction()
          .execute((trx) => writer.add(trx, { exchange, routingKey: 'k', payload: { i } }));
        const committed = performance.now();
        await broker.waitForDepth(queue, i + 1, 10_000);
        latencies.push(performance.now() - committed);
      }
    } finally {
      // Its sessions end with the stop, and a session's statistics are written when it ends.
      await relay.stop();
    }
    let headClaims = 0;
    await waitFor('the statistics of the relay', async () => {
      headClaims = ((await claimIndexReads()) - readsBefore) / HELD;
      return headClaims > 0;
    });
    latencies.sort((a, b) => a - b);
    const median = latencies[10]!;
    assert.equal(await t.count(), KEYS + HELD, 'a held row was published');
    assert.ok(median < 1000, `other messages published ${median.toFixed(0)} ms after their commit`);
    // Over about 6.5 s: before, every lane's poll and wake ran from the head (13-14 reads of
    // every held row); now one claim from the head a cursor lifetime of 1 s (7-8).
    assert.ok(headClaims <= 10, `the held rows were read ${headClaims.toFixed(1)} times`);
  });
  it('publishes the rows held behind a head that came due run after run, in order', async () => {
    const exchange = await broker.exchange('due-soon');
    const queue = await broker.queue('due-soon', exchange);
    const outbox = `"${t.schema}".outbox`;
    // Its head comes due in 1.5 s; 200 rows wait behind it, older than the cursor's look back.
    await t.pool.query(
      `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type, ordering_key, available_at)
       VALUES ('soon-0', $1, 'k', '\\x7b7d', 'application/json', 'soon', now() + interval '1.5 seconds')`,
      [exchange],
    );
    await t.pool.query(
      `INSERT INTO ${outbox} (message_id, exchange, routing_key, payload, content_type, ordering_key, available_at)
       SELECT 'soon-' || i, $1, 'k', '\\x7b7d', 'application/json', 'soon', now() - interval '1 minute'
       FROM generate_series(1, 200) i`,
      [exchange],
    );
    // Ten rows a batch: twenty runs, each found only once the one before it settled.
    const relay = new OutboxRelay({
      databaseUrl: DATABASE_URL,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      keyRunSize: 10,
    });
    await relay.start();
    const started = performance.now();
    try {
      await broker.waitForDepth(queue, 201, 30_000);
    } finally {
      await relay.stop();
    }
    const tookMs = performance.now() - started;
    const ids = (await broker.drain(queue)).map((m) => m.properties.messageId);
    assert.deepEqual(
      ids,
      Array.from({ length: 201 }, (_, i) => `soon-${i}`),
    );
    // Each run is found by a claim from the head once the one before it settled (a second at
    // most, the cursor's lifetime): 2.8 s here, 3.5-3.8 s before the empty claim's cursor.
    assert.ok(tookMs < 15_000, `the key's rows took ${tookMs.toFixed(0)} ms`);
  });
});
