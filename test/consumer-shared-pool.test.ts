import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { waitFor } from './support/wait-for.js';

/**
 * The documented set-up: the application and its handlers on one Kysely `db`. The host watches a
 * handler's connection while its transaction runs; the watch came off only after Kysely had given
 * the connection back to the pool, so an application transaction waiting for a connection could
 * get it still watched, and had its BEGIN refused as a handler's statement after its transaction
 * ("A handler of consumer ... ran a statement on its transaction after the transaction had
 * ended"), or its statements blamed on another consumer's handler.
 */
describe('idempotent consumer: the application on the same pool', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cshared');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  it("never refuses the application's own transactions on a busy shared pool", async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    pool.on('error', () => {});
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    const names = ['shared-a', 'shared-b'].map((suffix) => f.name(suffix));
    try {
      // A follow-up through the writer: its own watch on the connection comes on top.
      const writer = new OutboxWriter({ schema: f.t.schema });
      const handler = async (_payload: unknown, ctx: ConsumeContext) => {
        await writer.add(ctx.trx, { exchange: 'x', routingKey: 'follow-up', payload: {} });
      };
      const host = await f.host(
        ['shared-a', 'shared-b'].map((suffix) =>
          f.definition(suffix, handler, { routingKeys: [suffix], concurrency: 2 }),
        ),
        { db },
      );
      const total = 150;
      await f.publishMany(
        Array.from({ length: total }, (_, i) => ({
          routingKey: i % 2 === 0 ? 'shared-a' : 'shared-b',
          content: { i },
          options: { messageId: `shared-${i}` },
        })),
      );
      const failures: string[] = [];
      let committed = 0;
      let next = 0;
      const busy = () =>
        names.reduce((sum, name) => sum + host.stats(name).handled, 0) < total && next < 5000;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (busy()) {
            next += 1;
            try {
              await db.transaction().execute(async (trx) => {
                await sql`SELECT 1`.execute(trx);
                await writer.add(trx, { exchange: 'x', routingKey: 'app', payload: {} });
              });
              committed += 1;
            } catch (error) {
              failures.push(String(error));
            }
          }
        }),
      );
      await waitFor('every message handled', () =>
        names.every((name) => host.stats(name).handled === total / 2),
      );
      assert.deepEqual(
        failures.slice(0, 3),
        [],
        `${failures.length} of ${committed + failures.length} failed`,
      );
      assert.ok(committed > 0);
      for (const name of names) assert.equal(host.stats(name).failures, 0, name);
      const { rows } = await f.t.pool.query<{ key: string; n: number }>(
        `SELECT routing_key AS key, count(*)::int AS n FROM "${f.t.schema}".outbox GROUP BY 1 ORDER BY 1`,
      );
      assert.deepEqual(rows, [
        { key: 'app', n: committed },
        { key: 'follow-up', n: total },
      ]);
    } finally {
      await f.stopHosts();
      await db.destroy();
    }
  });
});
