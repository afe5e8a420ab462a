import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import knexFactory from 'knex';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { knexConsumerTransactions } from '../src/knex/index.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { type ReadOnlyRole, readOnlyRole } from './support/read-only-role.js';
import { waitFor } from './support/wait-for.js';

// A failover's leftovers: pooled sessions still read-only (opened under an `ALTER DATABASE ...
// SET default_transaction_read_only` since reset, or on the demoted primary a VIP led to). The
// consumer retried its claims on those same sessions, its retries keeping them from idling
// out, and stayed stuck until databaseRetryLimitMs although the database was writable again.
describe('idempotent consumer: read-only sessions left in the pool', () => {
  let f: ConsumerFixture;
  let role: ReadOnlyRole;
  let pool: pg.Pool;
  // biome-ignore lint/suspicious/noExplicitAny: the fixture's tables
  let db: Kysely<any>;
  before(async () => {
    f = await ConsumerFixture.open('croro');
    role = await readOnlyRole(f.t.pool, f.t.schema);
    // Sessions never idle out here: recovery must not wait for them to.
    pool = new pg.Pool({ connectionString: role.url, max: 6, idleTimeoutMillis: 0 });
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    db = new Kysely({ dialect: new PostgresDialect({ pool }) });
  });
  afterEach(() => f.stopHosts());
  after(async () => {
    await f.stopHosts();
    await db.destroy();
    await role.drop();
    await f.close();
  });

  it('writable again: every message handled within seconds, once, none counted as failed', async () => {
    const name = f.name('stale');
    const def = f.definition('stale', f.recordEffect, { routingKeys: ['stale'], concurrency: 3 });
    const host = await f.host([def], { db, databaseRetryLimitMs: 120_000 });
    for (const n of [1, 2, 3, 4, 5, 6])
      await f.publish('stale', { n }, { messageId: `stale-${n}` });
    await waitFor(
      'claims refused on read-only sessions',
      () => host.waitingForDatabase(name) > 0 && host.stats(name).databaseRetries >= 6,
      10_000,
    );
    assert.equal(host.stats(name).handled, 0);
    await role.reset();
    await waitFor('all six handled', () => host.stats(name).handled === 6, 5_000);
    const stats = host.stats(name);
    assert.equal(stats.failures, 0);
    assert.equal(stats.databaseRequeues, 0);
    const keys = (await f.effects()).filter((e) => e.consumer === name).map((e) => e.key);
    assert.equal(keys.length, 6, 'each message handled once');
    assert.equal(new Set(keys).size, 6);
    assert.equal(host.waitingForDatabase(name), 0);
  });
  // The ORM's own pool holds the read-only sessions: they are ended through its transactions.
  it('with an ORM adapter (Knex): the same, its pool past its read-only sessions', async () => {
    const knex = knexFactory({
      client: 'pg',
      connection: role.url,
      pool: { min: 0, max: 6, idleTimeoutMillis: 600_000 },
    });
    type Tx = Parameters<Parameters<typeof knex.transaction>[0]>[0];
    await role.readOnlyAgain();
    try {
      const name = f.name('stale-knex');
      const def = f.definition<unknown>(
        'stale-knex',
        async (_payload, ctx) => {
          await (ctx.tx as unknown as Tx)
            .withSchema(f.t.schema)
            .table('effects')
            .insert({ consumer: ctx.consumer, key: ctx.businessKey, attempt: ctx.attempt });
        },
        { routingKeys: ['stale-knex'], concurrency: 3 },
      );
      const host = await f.host([def], {
        transactions: knexConsumerTransactions(knex),
        databaseRetryLimitMs: 120_000,
      });
      for (const n of [1, 2, 3, 4]) {
        await f.publish('stale-knex', { n }, { messageId: `stale-knex-${n}` });
      }
      await waitFor(
        'claims refused on read-only sessions',
        () => host.waitingForDatabase(name) > 0 && host.stats(name).databaseRetries >= 4,
        10_000,
      );
      await role.reset();
      await waitFor('all four handled', () => host.stats(name).handled === 4, 5_000);
      assert.equal(host.stats(name).failures, 0);
      const keys = (await f.effects()).filter((e) => e.consumer === name).map((e) => e.key);
      assert.equal(new Set(keys).size, 4);
      assert.equal(keys.length, 4, 'each message handled once');
      await f.stopHosts();
    } finally {
      await knex.destroy();
    }
  });
});
