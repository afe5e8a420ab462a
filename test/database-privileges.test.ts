// A database role without a privilege outboxkit needs. Found at start, the start fails naming
// the GRANT. Revoked later, the relay once published the rows it could not delete over and
// over, every lane in turn without waiting, and a consumer took its refused claim for the
// handler's failure and dead-lettered every message unhandled.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { StartupError } from '../src/errors/startup-error.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { testRelay } from './support/relay-fixture.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

describe('database privileges', () => {
  let f: ConsumerFixture;
  const role = uniqueName('okrole');
  let roleUrl: string;
  const pools: pg.Pool[] = [];
  const rolePool = () => {
    const pool = new pg.Pool({ connectionString: roleUrl, max: 8 });
    pool.on('error', () => {});
    pools.push(pool);
    return pool;
  };
  const sql = (text: string) => f.t.pool.query(text);
  const schema = () => `"${f.t.schema}"`;
  /** Everything the docs list for the runtime role. */
  const grantAll = () =>
    sql(`GRANT USAGE ON SCHEMA ${schema()} TO ${role};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ${schema()}.outbox, ${schema()}.outbox_parked,
           ${schema()}.processed_messages, ${schema()}.effects TO ${role};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA ${schema()} TO ${role}`);
  const revokeAll = () =>
    sql(`REVOKE ALL ON ALL TABLES IN SCHEMA ${schema()} FROM ${role};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${schema()} FROM ${role};
         REVOKE USAGE ON SCHEMA ${schema()} FROM ${role}`);

  before(async () => {
    f = await ConsumerFixture.open('privs');
    await sql(`CREATE ROLE ${role} LOGIN`);
    const url = new URL(DATABASE_URL);
    url.username = role;
    url.password = '';
    roleUrl = url.toString();
  });
  afterEach(async () => {
    await f.stopHosts();
    await revokeAll();
  });
  after(async () => {
    for (const pool of pools) await pool.end();
    await f.close();
    await sql(`DROP OWNED BY ${role}; DROP ROLE ${role}`).catch(() => {});
  });

  it('the relay and the consumer host refuse to start, naming each GRANT', async () => {
    const relay = testRelay(f.t, { pool: rolePool() });
    await assert.rejects(relay.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-privilege-missing');
      assert.ok(
        error.message.includes(`GRANT USAGE ON SCHEMA ${schema()} TO "${role}"`),
        error.message,
      );
      return true;
    });
    await relay.stop();

    await sql(`GRANT USAGE ON SCHEMA ${schema()} TO ${role};
               GRANT SELECT, UPDATE ON ${schema()}.outbox TO ${role}`);
    const relay2 = testRelay(f.t, { pool: rolePool() });
    await assert.rejects(relay2.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-privilege-missing');
      assert.ok(
        error.message.includes(
          `lacks DELETE on ${schema()}.outbox, INSERT on ${schema()}.outbox_parked: run \`GRANT DELETE ON ${schema()}.outbox TO "${role}"; GRANT INSERT ON ${schema()}.outbox_parked TO "${role}"\``,
        ),
        error.message,
      );
      return true;
    });
    await relay2.stop();

    const def = f.definition('refused', f.recordEffect, { routingKeys: ['refused'] });
    const db = new Kysely({ dialect: new PostgresDialect({ pool: rolePool() }) });
    await assert.rejects(f.host([def], { db }), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-privilege-missing');
      assert.ok(
        error.message.includes(`lacks INSERT on ${schema()}.processed_messages, SELECT on`),
        error.message,
      );
      return true;
    });
  });

  it("a writer whose role may not insert names the grant, not pg's bare 42501", async () => {
    await sql(`GRANT USAGE ON SCHEMA ${schema()} TO ${role}`);
    const db = new Kysely<Record<string, never>>({
      dialect: new PostgresDialect({ pool: rolePool() }),
    });
    const writer = new OutboxWriter({ schema: f.t.schema });
    await assert.rejects(
      db
        .transaction()
        .execute((trx) => writer.add(trx, { exchange: 'x', routingKey: 'k', payload: {} })),
      (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'database-privilege-missing');
        assert.match(error.message, /INSERT on its outbox/);
        return true;
      },
    );
  });

  it('a relay whose DELETE is revoked waits between tries, every lane together, and loses nothing', async () => {
    await grantAll();
    const exchange = await f.broker.exchange('relay-events');
    const tap = await f.broker.queue('tap', exchange, 'priv.#');
    const relay = testRelay(f.t, {
      pool: rolePool(),
      reconnectBackoff: { initialMs: 200, maxMs: 10_000, jitter: 0 },
    });
    await relay.start();
    after(() => relay.stop());
    await sql(`REVOKE DELETE ON ${schema()}.outbox FROM ${role}`);
    const writer = new OutboxWriter({ schema: f.t.schema });
    await f.t.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 10; i += 1) {
        await writer.add(trx, { exchange, routingKey: 'priv.row', payload: { i } });
      }
    });
    // Each try publishes the 10 rows and fails to delete them.
    await waitFor('the first try', async () => (await f.broker.depth(tap)) >= 10);
    // A rate, measured over a window: tries 200, 600 and 1,400 ms after the first (a lane may
    // still race a claim into the moment a settle fails). The lanes in turn, without waiting
    // for one another, made 15 or more tries in it.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const copies = await f.broker.depth(tap);
    assert.ok(copies <= 60, `${copies} copies of 10 rows in 1.5 s`);
    // Set by each failed settle (the claim before it clears it).
    await waitFor(
      'the problem reported',
      async () =>
        (relay.databaseProblem?.error as StartupError | undefined)?.code ===
        'database-privilege-missing',
    );
    assert.equal(relay.databaseProblem?.kind, 'misconfigured');
    assert.equal(await f.t.count('outbox'), 10);

    await sql(`GRANT DELETE ON ${schema()}.outbox TO ${role}`);
    await waitFor('the outbox to drain', async () => (await f.t.count('outbox')) === 0);
    // Cleared when the lane takes in its settled batch, just after the COMMIT.
    await waitFor('the problem cleared', async () => relay.databaseProblem === undefined);
    await relay.stop();
  });

  it('a consumer whose claim is refused retries in place, counting no attempt, and handles once it is granted', async () => {
    await grantAll();
    const name = f.name('claims');
    const def = f.definition('claims', f.recordEffect, {
      routingKeys: ['claim.#'],
      retry: { maxAttempts: 2, backoff: { initialMs: 20, maxMs: 20 } },
    });
    const db = new Kysely({ dialect: new PostgresDialect({ pool: rolePool() }) });
    const host = await f.host([def], { db });
    await sql(`REVOKE INSERT ON ${schema()}.processed_messages FROM ${role}`);
    await f.publishMany(
      [0, 1, 2].map((i) => ({
        routingKey: 'claim.x',
        content: {},
        options: { messageId: `claim-${i}` },
      })),
    );
    await waitFor('retries in place', async () => host.stats(name).databaseRetries >= 6);
    const stats = host.stats(name);
    assert.equal(stats.failures, 0);
    assert.equal(stats.deadLettered, 0);
    assert.equal(stats.handled, 0);

    await sql(`GRANT INSERT ON ${schema()}.processed_messages TO ${role}`);
    await waitFor('handled', async () => host.stats(name).handled === 3);
    assert.equal(await f.effectCount(), 3);
    assert.equal(host.stats(name).deadLettered, 0);
  });
});
