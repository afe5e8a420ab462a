import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { readOutboxActivity } from '../src/dashboard/outbox-activity.js';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { migrate } from '../src/migrate/migrate.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { flushOutbox } from '../src/testing/flush-outbox.js';
import { DATABASE_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { waitFor } from './support/wait-for.js';

/**
 * Type parsers an application sets on its pool (or on pg's global registry): bigints as BigInt,
 * timestamps, JSON, doubles, integers and bytes left as the server's text.
 */
const applicationTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    const oids = pg.types.builtins;
    if (oid === oids.INT8) return (value: string) => BigInt(value);
    const asText = [oids.TIMESTAMPTZ, oids.JSONB, oids.JSON, oids.FLOAT8, oids.INT4, oids.BYTEA];
    if (asText.includes(oid)) return (value: string) => value;
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

describe("the application's pool with type parsers of its own", () => {
  const bed = relayTestBed('typeparsers');

  it('the relay publishes headers as written and deletes what was confirmed, from every claim', async () => {
    const exchange = await bed.broker.exchange('parsers');
    const queue = await bed.broker.queue('parsers', exchange, 'k');
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12, types: applicationTypes });
    let relay: OutboxRelay | undefined;
    try {
      await writeMessages(bed.t, [
        // A fresh claim, a key's head and the run behind it, and the retry lane's claim.
        { exchange, routingKey: 'k', payload: { n: 1 }, headers: { tenant: 'a', tries: 2 } },
        {
          exchange,
          routingKey: 'k',
          payload: { n: 2 },
          orderingKey: 'o',
          headers: { tenant: 'b' },
        },
        {
          exchange,
          routingKey: 'k',
          payload: { n: 3 },
          orderingKey: 'o',
          headers: { tenant: 'c' },
        },
        {
          exchange,
          routingKey: 'k',
          payload: { n: 4 },
          messageId: 'tried',
          headers: { tenant: 'd' },
        },
      ]);
      await bed.t.pool.query(
        `UPDATE "${bed.t.schema}".outbox SET attempts = 1 WHERE message_id = 'tried'`,
      );
      relay = await bed.start({ pool });
      await bed.broker.waitForDepth(queue, 4, 10_000);
      await waitFor('the outbox to be empty', async () => (await bed.t.count()) === 0);
      const messages = await bed.broker.drain(queue);
      const tenants = new Map(
        messages.map((m) => [(JSON.parse(m.content.toString()) as { n: number }).n, m]),
      );
      assert.deepEqual(
        [1, 2, 3, 4].map((n) => tenants.get(n)?.properties.headers?.tenant),
        ['a', 'b', 'c', 'd'],
      );
      assert.equal(tenants.get(1)!.properties.headers?.tries, 2);
      assert.equal(tenants.get(3)!.properties.headers?.['x-ordering-key'], 'o');
      assert.equal(typeof tenants.get(1)!.properties.timestamp, 'number');
      assert.equal(relay.stats().errors, 0);
    } finally {
      await relay?.stop();
      await pool.end();
    }
  });

  it('parked rows list with Dates and header objects', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2, types: applicationTypes });
    try {
      await writeMessages(bed.t, [
        { exchange: 'parsers-gone', routingKey: 'k', payload: {}, headers: { tenant: 'zeta' } },
      ]);
      await parkOutboxRows(bed.t, 'unroutable: 312 NO_ROUTE');
      const parked = await new ParkedMessages({ pool, schema: bed.t.schema }).list();
      assert.equal(parked.length, 1);
      const [row] = parked;
      assert.deepEqual(row!.headers, { tenant: 'zeta' });
      assert.ok(row!.createdAt instanceof Date, `createdAt: ${String(row!.createdAt)}`);
      assert.ok(row!.parkedAt instanceof Date, `parkedAt: ${String(row!.parkedAt)}`);
      assert.ok(row!.parkedAt.getTime() >= row!.createdAt.getTime());
      assert.ok(Math.abs(Date.now() - row!.parkedAt.getTime()) < 60_000);
      const shown = await new ParkedMessages({ pool, schema: bed.t.schema }).show(row!.id);
      assert.ok(Buffer.isBuffer(shown.payload), `payload: ${String(shown.payload)}`);
      assert.deepEqual(JSON.parse(shown.payload.toString()), {});
    } finally {
      await pool.end();
    }
  });

  it('migrate, flushOutbox, the status, the activity and the parked count answer in numbers', async () => {
    const exchange = await bed.broker.exchange('parsers-flush');
    await bed.broker.queue('parsers-flush', exchange, 'k');
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 12, types: applicationTypes });
    let relay: OutboxRelay | undefined;
    try {
      // Migrated already: nothing to apply, rather than every migration again.
      assert.deepEqual(await migrate(pool, { schema: bed.t.schema }), { applied: [] });
      await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: {} }]);
      relay = await bed.start({ pool });
      await flushOutbox(pool, { relay, schema: bed.t.schema, timeoutMs: 10_000 });
      await relay.stop();
      await writeMessages(bed.t, [{ exchange: 'parsers-none', routingKey: 'k', payload: {} }]);
      await parkOutboxRows(bed.t, 'unroutable: 312 NO_ROUTE');
      const status = await outboxStatus(pool, { schema: bed.t.schema, includeProcessed: true });
      assert.equal(typeof status.total.parked, 'number');
      assert.equal(typeof status.processed, 'number');
      assert.equal(await new ParkedMessages({ pool, schema: bed.t.schema }).count(), 1);
      const activity = await readOutboxActivity(pool, bed.t.schema);
      if (activity !== null) assert.equal(typeof activity.written, 'number');
    } finally {
      await relay?.stop();
      await pool.end();
    }
  });
});
