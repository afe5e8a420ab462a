import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName, delayQueueName } from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

describe('idempotent consumer: retries and dead letters', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cretry');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  it('a handler failing k times then succeeding: one effect, k+1 attempts, after the delays', async () => {
    const name = f.name('flaky');
    const k = 3;
    const calls: Array<{
      attempt: number;
      at: number;
      redelivered: boolean;
      headers: Readonly<Record<string, unknown>>;
    }> = [];
    const def = f.definition(
      'flaky',
      async (payload, ctx) => {
        calls.push({
          attempt: ctx.attempt,
          at: performance.now(),
          redelivered: ctx.redelivered,
          headers: ctx.headers,
        });
        // Written before throwing, so a rollback that did not happen would show.
        await f.recordEffect(payload, ctx);
        if (ctx.attempt <= k) throw new Error(`flaky failure ${ctx.attempt}`);
      },
      {
        routingKeys: ['flaky'],
        retry: { maxAttempts: 5, backoff: { initialMs: 100, maxMs: 1000 } },
      },
    );
    const host = await f.host([def]);
    const before = host.stats(name);
    await f.publish('flaky', { x: 1 }, { messageId: 'flaky-1', headers: { tenant: 't1' } });
    await waitFor('the message to succeed', () => host.stats(name).handled === 1);
    // A reading, as the relay's: it was the host's live object, so "before" moved too.
    assert.equal(before.handled, 0);
    assert.ok(Object.isFrozen(before));

    assert.deepEqual(
      calls.map((c) => c.attempt),
      [1, 2, 3, 4],
    );
    // The publisher's headers on every attempt; not the broker's record of the delay queue's
    // wait (it had x-death and x-first-death-* from attempt 2).
    for (const { attempt, headers } of calls) {
      assert.equal(headers.tenant, 't1');
      assert.deepEqual(
        Object.keys(headers).filter((h) => h.includes('death')),
        [],
        `attempt ${attempt}'s headers`,
      );
    }
    assert.equal(calls[3]!.headers[OUTBOXKIT_HEADERS.retries], 3);
    const gaps = calls.slice(1).map((c, i) => c.at - calls[i]!.at);
    for (const [i, expected] of [100, 200, 400].entries()) {
      assert.ok(
        gaps[i]! >= expected - 10,
        `retry ${i + 1} came after ${gaps[i]} ms, before its ${expected} ms delay`,
      );
      assert.ok(
        gaps[i]! < expected + 5000,
        `retry ${i + 1} came after ${gaps[i]} ms, long after ${expected} ms`,
      );
    }
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(
      effects.map((e) => e.attempt),
      [k + 1],
    );
    const stats = host.stats(name);
    assert.equal(stats.failures, k);
    assert.equal(stats.retried, k);
    assert.equal(stats.deadLettered, 0);
    for (const ms of [100, 200, 400]) assert.equal(await f.depth(delayQueueName(name, ms)), 0);
    assert.equal(await f.depth(deadLetterQueueName(name)), 0);
  });

  it('a handler that always fails ends in the dead-letter queue after N attempts, with headers', async () => {
    const name = f.name('doomed');
    let calls = 0;
    const def = f.definition(
      'doomed',
      async () => {
        calls += 1;
        throw new TypeError('cannot read the thing');
      },
      {
        routingKeys: ['doomed.#'],
        retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 100 } },
      },
    );
    const host = await f.host([def]);
    const before = Date.now();
    await f.publish(
      'doomed.x',
      { order: 42 },
      { messageId: 'doomed-1', correlationId: 'corr-1', headers: { tenant: 't1' } },
    );
    const dlq = deadLetterQueueName(name);
    await f.waitForDepth(dlq, 1);
    const [dead] = await f.drain(dlq);
    assert.ok(dead);
    assert.equal(calls, 3);
    assert.deepEqual(payloadOf(dead), { order: 42 });
    assert.equal(dead.properties.messageId, 'doomed-1');
    assert.equal(dead.properties.correlationId, 'corr-1');
    assert.equal(dead.properties.contentType, 'application/json');
    const h = dead.properties.headers ?? {};
    assert.equal(h.tenant, 't1');
    assert.equal(h[OUTBOXKIT_HEADERS.reason], 'retries-exhausted');
    assert.equal(h[OUTBOXKIT_HEADERS.attempts], 3);
    assert.equal(h[OUTBOXKIT_HEADERS.error], 'cannot read the thing');
    assert.equal(h[OUTBOXKIT_HEADERS.errorName], 'TypeError');
    assert.equal(h[OUTBOXKIT_HEADERS.consumer], name);
    assert.equal(h[OUTBOXKIT_HEADERS.originalExchange], f.name('events'));
    assert.equal(h[OUTBOXKIT_HEADERS.originalRoutingKey], 'doomed.x');
    assert.equal(
      h[OUTBOXKIT_HEADERS.retries],
      undefined,
      'a replayed dead letter starts with fresh attempts',
    );
    assert.equal(h['x-death'], undefined);
    const first = Date.parse(h[OUTBOXKIT_HEADERS.firstFailedAt]);
    const last = Date.parse(h[OUTBOXKIT_HEADERS.failedAt]);
    assert.ok(before - 1000 <= first && first <= last && last <= Date.now(), `${first} ${last}`);
    // Two retries of at least 20 and 40 ms lie between the first and the last failure.
    assert.ok(last - first >= 50, `failures only ${last - first} ms apart`);
    assert.equal(host.stats(name).deadLettered, 1);
    assert.equal(await f.depth(name), 0);
    assert.equal(await f.effectCount(), (await f.effects()).length);
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 0);
  });

  it('a thrown value that String() cannot convert is retried like any failure, in order', async () => {
    const name = f.name('odd');
    const seen: string[] = [];
    const def = f.definition(
      'odd',
      async (payload: { n: number }, ctx) => {
        if (payload.n === 1 && ctx.attempt === 1) throw Object.create(null);
        seen.push(`${payload.n}@${ctx.attempt}`);
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['odd'], ordered: true },
    );
    const host = await f.host([def]);
    for (const n of [1, 2, 3]) {
      await f.publish('odd', { n }, { messageId: `odd-${n}`, headers: { 'x-ordering-key': 'k' } });
    }
    await waitFor('all handled', () => host.stats(name).handled === 3, 10_000);
    assert.deepEqual(seen, ['1@2', '2@1', '3@1']);
    assert.equal(host.stats(name).retried, 1);
  });

  it("a run that fails unexpectedly (here the application's logger threw) hands its delivery back, in order", async () => {
    const name = f.name('unexpected');
    const seen: number[] = [];
    let failed = false;
    const def = f.definition(
      'unexpected',
      async (payload: { n: number }, ctx) => {
        if (payload.n === 1 && !failed) {
          failed = true;
          throw new Error('first try');
        }
        seen.push(payload.n);
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['unexpected'], ordered: true },
    );
    let thrown = false;
    const logger = {
      debug() {},
      info() {},
      error() {},
      warn(message: string) {
        if (message.startsWith('handler failed') && !thrown) {
          thrown = true;
          throw new Error('logger down');
        }
      },
    };
    const host = await f.host([def], { logger });
    for (const n of [1, 2, 3]) {
      await f.publish(
        'unexpected',
        { n },
        { messageId: `unexpected-${n}`, headers: { 'x-ordering-key': 'k' } },
      );
    }
    await waitFor('all handled', () => host.stats(name).handled === 3, 10_000);
    assert.ok(thrown);
    assert.deepEqual(seen, [1, 2, 3]);
  });

  it('a PermanentError dead-letters at once', async () => {
    const name = f.name('permanent');
    let calls = 0;
    const def = f.definition(
      'permanent',
      async (payload, ctx) => {
        calls += 1;
        await f.recordEffect(payload, ctx);
        throw new PermanentError('order 7 does not exist');
      },
      {
        routingKeys: ['permanent'],
        retry: { maxAttempts: 5, backoff: { initialMs: 20, maxMs: 100 } },
        businessKey: (payload: { order: number }) => `order-${payload.order}`,
      },
    );
    const warned: { message: string; fields: unknown }[] = [];
    const logger = {
      ...silentLogger,
      warn: (message: string, fields?: unknown) => void warned.push({ message, fields }),
    };
    const host = await f.host([def], { logger });
    await f.publish('permanent', { order: 7 }, { messageId: 'perm-1' });
    const dlq = deadLetterQueueName(name);
    await f.waitForDepth(dlq, 1);
    const [dead] = await f.drain(dlq);
    const h = dead!.properties.headers ?? {};
    assert.equal(calls, 1);
    assert.equal(h[OUTBOXKIT_HEADERS.reason], 'permanent-error');
    assert.equal(h[OUTBOXKIT_HEADERS.attempts], 1);
    assert.equal(h[OUTBOXKIT_HEADERS.errorName], 'PermanentError');
    assert.equal(host.stats(name).retried, 0);
    assert.equal(
      (await f.effects()).filter((e) => e.consumer === name).length,
      0,
      'the effect was rolled back',
    );
    // The log names the message as an operator looks it up: by its business key too.
    const logged = warned.find((w) => w.message === 'message dead-lettered');
    const fields = logged?.fields as { stack?: unknown };
    assert.deepEqual(
      { ...fields, error: undefined, stack: undefined },
      {
        consumer: name,
        messageId: 'perm-1',
        businessKey: 'order-7',
        reason: 'permanent-error',
        attempts: 1,
        error: undefined,
        stack: undefined,
      },
    );
    // Where the handler threw, which its message alone does not tell (a first-hour probe).
    assert.match(String(fields.stack), /PermanentError: order 7 does not exist\n\s+at /);
    assert.match(String(fields.stack), /consumer-retry\.test\.(ts|js)/);
  });

  it('a handler past its time limit is rolled back and retried, whether stuck in SQL or elsewhere', async () => {
    const name = f.name('slow');
    const def = f.definition(
      'slow',
      async (payload: { mode: string }, ctx: ConsumeContext) => {
        await f.recordEffect(payload, ctx);
        if (ctx.attempt > 1) return;
        if (payload.mode === 'sql') {
          // Cancelled by the time limit.
          await sql`SELECT pg_sleep(30)`.execute(ctx.trx);
        } else {
          // Ignores the time limit at first and finishes late: it must not commit.
          await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
          await new Promise((resolve) => setTimeout(resolve, 100));
          await f.recordEffect(payload, ctx).catch(() => {});
        }
      },
      { routingKeys: ['slow'], timeoutMs: 1000, concurrency: 2 },
    );
    const host = await f.host([def]);
    await f.publishMany([
      { routingKey: 'slow', content: { mode: 'sql' }, options: { messageId: 'slow-sql' } },
      { routingKey: 'slow', content: { mode: 'late' }, options: { messageId: 'slow-late' } },
    ]);
    await waitFor('both retried successfully', () => host.stats(name).handled === 2);
    // Let the abandoned transaction of the late handler end before counting.
    await waitFor('the pool to be idle', () => f.t.pool.idleCount === f.t.pool.totalCount);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(effects.map((e) => `${e.key}@${e.attempt}`).sort(), [
      'slow-late@2',
      'slow-sql@2',
    ]);
    assert.equal(host.stats(name).timeouts, 2);
  });

  it('batched: a failing handler rolls its batch back and only it is retried', async () => {
    const name = f.name('batchfail');
    const calls = new Map<string, number>();
    const def = f.definition(
      'batchfail',
      async (payload, ctx) => {
        const key = ctx.businessKey;
        calls.set(key, (calls.get(key) ?? 0) + 1);
        await f.recordEffect(payload, ctx);
        if (key === 'bf37' && ctx.attempt === 1) throw new Error('first try of 37 fails');
      },
      { routingKeys: ['batchfail'], batchSize: 20, concurrency: 2 },
    );
    const host = await f.host([def], {}, false);
    // Queue everything before consuming, so batches are full.
    await host.start();
    await host.stop();
    const ids = Array.from({ length: 100 }, (_, i) => `bf${i}`);
    await f.publishMany(
      ids.map((id) => ({ routingKey: 'batchfail', content: { id }, options: { messageId: id } })),
    );
    const again = await f.host([def]);
    await waitFor('all handled', () => again.stats(name).handled === 100);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(effects.length, 100);
    assert.equal(new Set(effects.map((e) => e.key)).size, 100);
    assert.equal(effects.find((e) => e.key === 'bf37')!.attempt, 2);
    const stats = again.stats(name);
    assert.ok(stats.batches >= 1);
    assert.ok(stats.batchFallbacks >= 1);
    assert.equal(stats.retried, 1);
    assert.equal(stats.deadLettered, 0);
  });
});
