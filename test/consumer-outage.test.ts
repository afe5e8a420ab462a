import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { waitFor } from './support/wait-for.js';

/** What an HTTP or Redis client throws when its server is down: a Node socket error. */
function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), {
    code: 'ECONNREFUSED',
    errno: -111,
    syscall: 'connect',
  });
}

/** Ends the handler's own database session, as a Postgres restart would, mid-transaction. */
async function killOwnSession(ctx: ConsumeContext): Promise<void> {
  await sql`SELECT pg_terminate_backend(pg_backend_pid())`.execute(ctx.trx);
}

/** A Kysely instance whose sessions start with `options` (`-c setting=value`), as a role's would. */
function sessionDb(options: string): { db: Kysely<unknown>; pool: pg.Pool } {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4, options });
  pool.on('error', () => {});
  return { db: new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) }), pool };
}

describe('idempotent consumer: handler failures versus database outages', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('coutage');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  it('a handler whose own dependency refuses connections uses its attempts and is dead-lettered', async () => {
    const name = f.name('refused');
    const attempts: number[] = [];
    const def = f.definition(
      'refused',
      async (payload, ctx) => {
        attempts.push(ctx.attempt);
        await f.recordEffect(payload, ctx);
        throw refused();
      },
      {
        routingKeys: ['refused'],
        retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 100 } },
      },
    );
    const host = await f.host([def]);
    await f.publish('refused', { n: 1 }, { messageId: 'refused-1' });
    const dlq = deadLetterQueueName(name);
    await f.waitForDepth(dlq, 1, 10_000);
    const [dead] = await f.drain(dlq);
    const headers = dead!.properties.headers ?? {};
    assert.equal(headers[OUTBOXKIT_HEADERS.reason], 'retries-exhausted');
    assert.equal(headers[OUTBOXKIT_HEADERS.attempts], 3);
    assert.deepEqual(attempts, [1, 2, 3]);
    const stats = host.stats(name);
    assert.equal(stats.databaseRetries, 0, 'the handler’s error was taken for a database outage');
    assert.equal(stats.failures, 3);
    assert.equal(stats.deadLettered, 1);
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 0);
  });

  it('a dependency down for two attempts: retried through the delay queues, handled on the third', async () => {
    const name = f.name('flaky-dep');
    const def = f.definition(
      'flaky-dep',
      async (payload, ctx) => {
        await f.recordEffect(payload, ctx);
        if (ctx.attempt <= 2) throw refused();
      },
      {
        routingKeys: ['flaky-dep'],
        retry: { maxAttempts: 5, backoff: { initialMs: 20, maxMs: 100 } },
      },
    );
    const host = await f.host([def]);
    await f.publish('flaky-dep', { n: 1 }, { messageId: 'flaky-dep-1' });
    await waitFor('the message to be handled', () => host.stats(name).handled === 1, 10_000);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(
      effects.map((e) => e.attempt),
      [3],
    );
    const stats = host.stats(name);
    assert.equal(stats.retried, 2);
    assert.equal(stats.databaseRetries, 0);
  });

  it('the transaction’s own session dying mid-handler is an outage: retried in place, no attempt counted', async () => {
    const name = f.name('own-session');
    let kills = 0;
    const attempts: number[] = [];
    const def = f.definition(
      'own-session',
      async (payload, ctx) => {
        attempts.push(ctx.attempt);
        await f.recordEffect(payload, ctx);
        if (kills < 3) {
          kills += 1;
          await killOwnSession(ctx);
        }
      },
      { routingKeys: ['own-session'] },
    );
    const host = await f.host([def]);
    await f.publish('own-session', { n: 1 }, { messageId: 'own-session-1' });
    await waitFor('the message to be handled', () => host.stats(name).handled === 1, 10_000);
    assert.deepEqual(attempts, [1, 1, 1, 1]);
    const stats = host.stats(name);
    assert.equal(stats.databaseRetries, 3);
    assert.equal(stats.failures, 0);
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 1);
  });

  // What a pool that reached a standby gives (a failover that left its address on the old
  // primary, or a replica's address): every claim refused with 25006. Counted as the messages'
  // attempts, a read-only spell longer than the retry schedule dead-lettered them all unhandled.
  it("a read-only database is an outage, not the messages' fault: handed back, then handled once", async () => {
    const name = f.name('read-only');
    const def = f.definition('read-only', f.recordEffect, {
      routingKeys: ['read-only'],
      retry: { maxAttempts: 2, backoff: { initialMs: 20, maxMs: 50 } },
    });
    const readOnly = sessionDb('-c default_transaction_read_only=on').db;
    try {
      const host = await f.host([def], { db: readOnly, databaseRetryLimitMs: 300 });
      for (const n of [1, 2, 3]) await f.publish('read-only', { n }, { messageId: `ro-${n}` });
      await waitFor('a hand-back', () => host.stats(name).databaseRequeues >= 3, 10_000);
      const stats = host.stats(name);
      assert.equal(stats.failures, 0, 'not counted as failed attempts');
      assert.equal(stats.deadLettered, 0);
      assert.equal(stats.handled, 0);
      await f.stopHosts();
    } finally {
      await readOnly.destroy();
    }
    // Writable again (the failover done): every message handled once, none dead-lettered.
    const host = await f.host([def]);
    await waitFor('all three handled', () => host.stats(name).handled === 3, 10_000);
    assert.equal(await f.depth(deadLetterQueueName(name)), 0);
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 3);
  });

  // A DBA's idle_in_transaction_session_timeout shorter than the handler's limit ended the
  // session of a handler that waited between its statements (FATAL 25P03): retried for ever as
  // "database unavailable", never counted, its effects outside the database repeated each time.
  it("a session idle limit shorter than the handler's is raised to it for the handler's transaction", async () => {
    const name = f.name('idle-limit');
    let runs = 0;
    const def = f.definition(
      'idle-limit',
      async (payload: unknown, ctx: ConsumeContext) => {
        runs += 1;
        await sql`SELECT 1`.execute(ctx.trx);
        await new Promise((resolve) => setTimeout(resolve, 700));
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['idle-limit'], timeoutMs: 5000 },
    );
    const { db: strict, pool } = sessionDb('-c idle_in_transaction_session_timeout=300');
    try {
      const host = await f.host([def], { db: strict });
      await f.publish('idle-limit', { n: 1 }, { messageId: 'idle-limit-1' });
      await waitFor('handled', () => host.stats(name).handled === 1, 10_000);
      const stats = host.stats(name);
      assert.equal(stats.databaseRetries, 0, 'no session ended under the handler');
      assert.equal(stats.failures, 0);
      assert.equal(runs, 1);
      // Only for that transaction: the session's own limit is back afterwards.
      const { rows } = await pool.query<{ limit: string }>(
        `SELECT current_setting('idle_in_transaction_session_timeout') AS limit`,
      );
      assert.equal(rows[0]!.limit, '300ms');
    } finally {
      await f.stopHosts();
      await strict.destroy();
    }
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 1);
  });

  for (const ordered of [false, true]) {
    it(`an outage longer than databaseRetryLimitMs hands the delivery back to the queue${ordered ? ' (ordered: in order)' : ''}`, async () => {
      const suffix = ordered ? 'limit-ordered' : 'limit';
      const name = f.name(suffix);
      // The session of every transaction dies until `healed`: Postgres is unusable for it.
      let healed = false;
      const handled: Array<{ n: number; attempt: number; redelivered: boolean }> = [];
      const def = f.definition<{ n: number }>(
        suffix,
        async (payload, ctx) => {
          if (!healed) await killOwnSession(ctx);
          await f.recordEffect(payload, ctx);
          handled.push({ n: payload.n, attempt: ctx.attempt, redelivered: ctx.redelivered });
        },
        { routingKeys: [suffix], ordered, concurrency: 2 },
      );
      const host = await f.host([def], { databaseRetryLimitMs: 300 });
      const key = { headers: { 'x-ordering-key': 'k1' } };
      await f.publish(suffix, { n: 1 }, { messageId: `${suffix}-1`, ...key });
      await f.publish(suffix, { n: 2 }, { messageId: `${suffix}-2`, ...key });
      await waitFor(
        'the outage to outlast the limit',
        () => host.stats(name).databaseRequeues >= 1,
        10_000,
      );
      const samples = await collectMetrics({ consumers: host });
      const sample = (metric: string) =>
        samples.find((s) => s.name === metric && s.labels.consumer === name)?.value;
      assert.ok((sample('outboxkit_consumer_database_retries_total') ?? 0) > 0);
      assert.ok((sample('outboxkit_consumer_database_requeues_total') ?? 0) >= 1);
      healed = true;
      await waitFor('both handled', () => host.stats(name).handled === 2, 10_000);
      const stats = host.stats(name);
      assert.equal(stats.failures, 0, 'an outage is not the message’s fault');
      assert.equal(stats.deadLettered, 0);
      assert.ok(stats.redelivered >= 1, `redelivered ${stats.redelivered}`);
      assert.ok(handled.every((h) => h.attempt === 1));
      if (ordered) {
        assert.deepEqual(
          handled.map((h) => h.n),
          [1, 2],
        );
      }
      const effects = (await f.effects()).filter((e) => e.consumer === name);
      assert.equal(effects.length, 2);
    });
  }
});
