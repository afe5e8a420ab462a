import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { CURSOR_TTL_MS } from '../src/relay/claim-cursor.js';
import type { RelayOptions } from '../src/relay/relay-options.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { DATABASE_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { waitFor } from './support/wait-for.js';

/**
 * The relay on a pool whose sessions start with settings of the application's own (pg's
 * `options`, as `-c name=value`; a database or role default does the same): the relay may run on
 * the application's pool, and whatever that pool's sessions default to reaches its SQL.
 */
describe('OutboxRelay on a pool with session settings of its own', () => {
  const bed = relayTestBed('relay_settings');

  /**
   * Writes `total` messages, drains them with a relay on a pool with `settings`, and returns
   * how long the drain took and the queue, once the outbox is empty and every message was
   * counted in the queue exactly once.
   */
  async function drainOn(
    name: string,
    settings: string,
    total: number,
    options: Partial<RelayOptions> = {},
  ): Promise<{ took: number; queue: string }> {
    const exchange = await bed.broker.exchange(name);
    const queue = await bed.broker.queue(name, exchange);
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12, options: settings });
    pool.on('error', () => {});
    try {
      await writeMessages(bed.t, numberedMessages(exchange, total, name));
      const started = performance.now();
      const relay = await bed.start({ pool, ...options });
      await waitFor('the outbox drained', async () => (await bed.t.count()) === 0, 30_000);
      const took = performance.now() - started;
      await relay.stop();
      assert.equal(await bed.broker.depth(queue), total, 'messages in the queue');
      assert.equal(relay.stats().published, total, 'rows confirmed and deleted');
      return { took, queue };
    } finally {
      await pool.end();
    }
  }

  // Such a session prints a timestamptz as "... IST", which reads back as Israel's time, 3.5
  // hours off: a claim cursor kept as that text put each next claim past every row, so the relay
  // claimed one batch per cursor lifetime (CURSOR_TTL_MS), about 800 msgs/s at 1000 rows a batch.
  it('drains at full speed whatever DateStyle and TimeZone print a timestamp as', async () => {
    const total = 3000;
    const batchSize = 200;
    const { took } = await drainOn(
      'datestyle',
      '-c DateStyle=Postgres,DMY -c TimeZone=Asia/Kolkata',
      total,
      { batchSize },
    );
    // One batch per cursor lifetime would take (total / batchSize) seconds: 15.
    const oneBatchPerLifetime = (total / batchSize) * CURSOR_TTL_MS;
    assert.ok(took < oneBatchPerLifetime / 2, `drained ${total} rows in ${Math.round(took)} ms`);
  });

  // Under SERIALIZABLE the lanes' claims and deletes conflict, and a COMMIT that fails after
  // the broker confirmed leaves its rows to go out again: 45,064 publishes for 20,000 rows.
  it('publishes each row once where the default isolation is SERIALIZABLE', async () => {
    await drainOn('serializable', '-c default_transaction_isolation=serializable', 5000, {
      batchSize: 250,
    });
  });

  // A lane is idle in its claim transaction while it waits its turn and for the broker's
  // confirms: ended by Postgres after the broker had confirmed, its batch went out again, over
  // and over (60,256 publishes for 2,000 rows in 30 s at 20 ms).
  it('publishes each row once under a short idle_in_transaction_session_timeout', async () => {
    await drainOn('idle', '-c idle_in_transaction_session_timeout=20', 2000, {
      batchSize: 250,
    });
  });

  // A float8's text follows extra_float_digits: at -15 every AMQP timestamp read 2000000000, a
  // parked row's times were years off, and the status' oldest age was rounded to 1000 s.
  it('reads times and ages whatever extra_float_digits rounds a float8 to', async () => {
    const settings = '-c extra_float_digits=-15';
    const writtenFrom = Math.floor(Date.now() / 1000);
    const { queue } = await drainOn('floats', settings, 20);
    const writtenTo = Math.ceil(Date.now() / 1000);
    for (const message of await bed.broker.drain(queue)) {
      const stamp = message.properties.timestamp as number;
      assert.ok(stamp >= writtenFrom && stamp <= writtenTo, `timestamp ${stamp}`);
    }
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2, options: settings });
    try {
      await writeMessages(bed.t, [{ exchange: 'floats-gone', routingKey: 'k', payload: {} }]);
      await bed.t.pool.query(
        `UPDATE "${bed.t.schema}".outbox SET created_at = now() - interval '1234.5 seconds', available_at = now() - interval '1234.5 seconds'`,
      );
      const status = await outboxStatus(pool, { schema: bed.t.schema });
      const age = status.total.oldestPendingAgeSeconds!;
      assert.ok(age >= 1234 && age < 1300, `oldest age ${age}`);
      await parkOutboxRows(bed.t, 'unroutable: 312 NO_ROUTE');
      const [parked] = await new ParkedMessages({ pool, schema: bed.t.schema }).list();
      const createdAgo = Date.now() - parked!.createdAt.getTime();
      assert.ok(createdAgo >= 1_234_000 && createdAgo < 1_300_000, `created ${createdAgo} ms ago`);
      assert.ok(Math.abs(Date.now() - parked!.parkedAt.getTime()) < 60_000);
    } finally {
      await pool.end();
    }
  });

  // The LISTEN session is idle by design: ended at every interval, it came back each time with
  // a warning (8 in 10 s at 1 s).
  it('keeps its LISTEN session under a short idle_session_timeout', async () => {
    const pool = new pg.Pool({
      connectionString: DATABASE_URL,
      max: 12,
      options: '-c idle_session_timeout=300',
    });
    pool.on('error', () => {});
    try {
      const relay = await bed.start({ pool });
      await waitFor('the relay to listen', () => relay.listenConnects === 1);
      // Three of the setting's intervals.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(relay.listenConnects, 1, 'LISTEN sessions made');
      await relay.stop();
    } finally {
      await pool.end();
    }
  });
});
