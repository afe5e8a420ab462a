import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CamelCasePlugin } from 'kysely';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { kyselyQueryable } from '../src/sql/kysely-queryable.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/**
 * Writes one outbox row with its times set relative to the database's clock, as the writer
 * (a delayed message) or the relay (a retry) would have left it.
 */
async function row(
  t: TestDatabase,
  exchange: string,
  times: { createdAgo: string; availableIn: string; attempts?: number; lastError?: string },
): Promise<void> {
  await t.pool.query(
    `INSERT INTO "${t.schema}".outbox (message_id, exchange, routing_key, payload, content_type,
       created_at, available_at, attempts, last_error)
     VALUES (gen_random_uuid()::text, $1, 'k', '\\x7b7d', 'application/json',
       now() - $2::interval, now() + $3::interval, $4, $5)`,
    [exchange, times.createdAgo, times.availableIn, times.attempts ?? 0, times.lastError ?? null],
  );
}

describe('outbox status: the lag counts only rows that are due', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('status_due');
  });
  after(() => t.close());

  it('a message scheduled an hour ahead is pending but is no lag', async () => {
    await row(t, 'later', { createdAgo: '10 minutes', availableIn: '1 hour' });
    const status = await outboxStatus(t.pool, { schema: t.schema });
    assert.equal(status.total.pending, 1);
    assert.equal(status.total.oldestPendingAgeSeconds, null, 'a delayed row counted as lag');
    assert.equal(status.exchanges[0]?.oldestPendingAgeSeconds, null);
    // Counted apart, so that the backlog alert leaves it out (a probe: 100,000 rows scheduled
    // an hour ahead read as a backlog of 100,000).
    assert.equal(status.total.scheduled, 1);
    const metrics = await collectMetrics({ pool: t.pool, schema: t.schema });
    const age = metrics.find((m) => m.name.endsWith('oldest_pending_age_seconds'));
    assert.equal(age?.value, 0);
    const scheduled = metrics.find((m) => m.name === 'outboxkit_outbox_scheduled_messages');
    assert.deepEqual([scheduled?.labels, scheduled?.value], [{ exchange: 'later' }, 1]);
  });

  it('a delayed message that became due counts from its due time; a retrying one from its write', async () => {
    // Written an hour ago for 30 s ago: it has waited 30 s, not an hour.
    await row(t, 'due', { createdAgo: '1 hour', availableIn: '-30 seconds' });
    let status = await outboxStatus(t.pool, { schema: t.schema });
    const due = status.exchanges.find((e) => e.exchange === 'due')!;
    assert.ok(
      due.oldestPendingAgeSeconds !== null &&
        due.oldestPendingAgeSeconds >= 30 &&
        due.oldestPendingAgeSeconds < 90,
      `age ${due.oldestPendingAgeSeconds}`,
    );
    assert.equal(status.total.oldestPendingAgeSeconds, due.oldestPendingAgeSeconds);

    // Failed twice and waiting for its next attempt: still not delivered 5 minutes after the
    // write, whatever its next attempt time.
    await row(t, 'failing', { createdAgo: '5 minutes', availableIn: '20 seconds', attempts: 2 });
    status = await outboxStatus(t.pool, { schema: t.schema });
    const failing = status.exchanges.find((e) => e.exchange === 'failing')!;
    assert.ok(
      failing.oldestPendingAgeSeconds !== null && failing.oldestPendingAgeSeconds >= 300,
      `age ${failing.oldestPendingAgeSeconds}`,
    );
    assert.equal(status.total.oldestPendingAgeSeconds, failing.oldestPendingAgeSeconds);
    assert.equal(status.total.pending, 3);
    // Waiting for its next attempt is not being scheduled: only `later` is.
    assert.equal(status.total.scheduled, 1);

    // Put off without an attempt counted (its exchange is missing, or the broker did not
    // confirm): tried and not delivered, so it counts from its write too.
    await row(t, 'deferred', {
      createdAgo: '10 minutes',
      availableIn: '30 seconds',
      lastError: 'exchange "deferred" does not exist',
    });
    status = await outboxStatus(t.pool, { schema: t.schema });
    const deferred = status.exchanges.find((e) => e.exchange === 'deferred')!;
    assert.ok(
      (deferred.oldestPendingAgeSeconds ?? 0) >= 600,
      `age ${deferred.oldestPendingAgeSeconds}`,
    );
    assert.equal(status.total.oldestPendingAgeSeconds, deferred.oldestPendingAgeSeconds);
    // Shown as retrying, though no attempt was counted: the health check sees it waiting.
    assert.equal(deferred.retrying, 1);
    assert.equal(status.exchanges.find((e) => e.exchange === 'due')!.retrying, 0);
  });

  it('reads the same through a Kysely whose plugins rename result columns (CamelCasePlugin)', async () => {
    // What the Nest module and the consumer host read through when they have no pool.
    const camel = kyselyQueryable(t.db.withPlugin(new CamelCasePlugin()));
    // The ages move with the clock between the two reads: whole seconds compare.
    const read = async (via: Parameters<typeof outboxStatus>[0]) =>
      JSON.stringify(await outboxStatus(via, { schema: t.schema }), (key, value) =>
        key.endsWith('Seconds') && typeof value === 'number' ? Math.floor(value) : value,
      );
    const expected = await read(t.pool);
    assert.match(expected, /"pending":[1-9]/);
    assert.equal(await read(camel), expected);
  });

  // Rows written by SQL at +-infinity (the relay parks them) failed the whole read: "cannot
  // subtract infinite timestamps".
  it('reads while rows written by SQL have an infinite created_at, leaving them out of the age', async () => {
    const schema = `"${t.schema}"`;
    await t.pool.query(`DELETE FROM ${schema}.outbox`);
    await row(t, 'inf', { createdAgo: '2 minutes', availableIn: '-2 minutes' });
    await t.pool.query(
      `INSERT INTO ${schema}.outbox (message_id, exchange, routing_key, payload, content_type, created_at, attempts, last_error)
       VALUES ('minus', 'inf', 'k', '\\x7b7d', 'application/json', '-infinity', 1, 'boom'),
              ('plus', 'inf', 'k', '\\x7b7d', 'application/json', 'infinity', 1, 'boom')`,
    );
    const status = await outboxStatus(t.pool, { schema: t.schema });
    assert.equal(status.total.pending, 3);
    const age = status.total.oldestPendingAgeSeconds;
    assert.ok(age !== null && age >= 120 && age < 180, `age ${age}`);
    await t.pool.query(`DELETE FROM ${schema}.outbox`);
  });
});
