import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

describe('idempotent consumer: lost connections', () => {
  let f: ConsumerFixture;
  const proxies: TcpProxy[] = [];
  before(async () => {
    f = await ConsumerFixture.open('crec');
  });
  afterEach(async () => {
    await f.stopHosts();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });
  after(() => f.close());

  const proxy = async (url: string) => {
    const { hostname, port } = new URL(url);
    const p = await TcpProxy.start(hostname, Number(port));
    proxies.push(p);
    return p;
  };

  /** A Kysely instance on a pool of `max` connections to Postgres through `postgres`. */
  const dbThrough = (postgres: TcpProxy, max: number) => {
    const pool = new pg.Pool({ connectionString: postgres.url(DATABASE_URL), max });
    pool.on('error', () => {});
    // A checked-out client whose server goes away emits 'error'; without a listener the process
    // dies. Applications need this too (see the consumer docs).
    pool.on('connect', (client) => client.on('error', () => {}));
    return new Kysely({ dialect: new PostgresDialect({ pool }) });
  };

  const publishN = (routingKey: string, n: number) =>
    f.publishMany(
      Array.from({ length: n }, (_, i) => ({
        routingKey,
        content: { i },
        options: { messageId: `${routingKey}-${i}` },
      })),
    );

  const assertEveryEffectOnce = async (name: string, n: number) => {
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    const counts = new Map<string, number>();
    for (const e of effects) counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
    const twice = [...counts].filter(([, c]) => c > 1).map(([k]) => k);
    assert.deepEqual(twice, [], 'no effect applied twice');
    assert.equal(counts.size, n, 'no message lost');
  };

  it('the broker connection reset while 1000 messages are in flight: every effect exactly once', async () => {
    const name = f.name('reset');
    const amqp = await proxy(AMQP_URL);
    const def = f.definition('reset', f.recordEffect, {
      routingKeys: ['reset'],
      concurrency: 8,
      prefetch: 1000,
    });
    // Declare the queue first, so all 1000 messages are waiting (and then in flight) at once.
    const host: ConsumerHost = await f.host([def], { amqpUrl: amqp.url(AMQP_URL) }, false);
    await host.start();
    await host.stop();
    await publishN('reset', 1000);
    const logger = recordingLogger();
    const live = await f.host([def], { amqpUrl: amqp.url(AMQP_URL), logger });
    for (const at of [250, 600]) {
      await waitFor(`${at} handled`, () => live.stats(name).handled >= at);
      amqp.resetAll();
    }
    await waitFor(
      'every message settled',
      async () =>
        (await f.effects()).filter((e) => e.consumer === name).length >= 1000 &&
        (await f.depth(name)) === 0,
      30_000,
    );
    await assertEveryEffectOnce(name, 1000);
    const stats = live.stats(name);
    assert.ok(live.amqpConnects >= 3, `reconnected: ${live.amqpConnects} connections`);
    // The fault hit messages in flight: the broker delivered them again.
    assert.ok(stats.redelivered > 0, `redelivered ${stats.redelivered}`);
    assert.equal(stats.handled, 1000);
    assert.equal(stats.failures, 0);
    // Each loss is followed by its recovery at the same level: a log kept at `warn` (the
    // default in code) said "lost; reconnecting" and never that it had (found by a probe).
    const warned = logger.lines.filter((l) => l.level === 'warn').map((l) => l.text.split(' {')[0]);
    const losses = warned.filter((t) => t === 'RabbitMQ connection lost; reconnecting').length;
    assert.ok(losses >= 2, JSON.stringify(warned));
    assert.equal(warned.filter((t) => t === 'RabbitMQ connected').length, live.amqpConnects - 1);
  });

  it('database connections reset mid-transaction: retried in place, every effect exactly once', async () => {
    const name = f.name('dbreset');
    const postgres = await proxy(DATABASE_URL);
    const db = dbThrough(postgres, 10);
    try {
      const def = f.definition('dbreset', f.recordEffect, {
        routingKeys: ['dbreset'],
        concurrency: 6,
        prefetch: 60,
      });
      const host = await f.host([def], { db });
      await publishN('dbreset', 600);
      for (const at of [150, 400]) {
        await waitFor(`${at} handled`, () => host.stats(name).handled >= at);
        postgres.resetAll();
      }
      await waitFor(
        'every message settled',
        () => {
          const s = host.stats(name);
          return s.handled + s.duplicates >= 600;
        },
        30_000,
      );
      await waitFor('the queue to drain', async () => (await f.depth(name)) === 0);
      await assertEveryEffectOnce(name, 600);
      const stats = host.stats(name);
      assert.ok(stats.databaseRetries > 0, `databaseRetries ${stats.databaseRetries}`);
      assert.equal(stats.failures, 0, 'an outage is not the message’s fault');
      assert.equal(stats.deadLettered, 0);
      await f.stopHosts();
    } finally {
      await db.destroy();
    }
  });

  /**
   * One message whose first attempt freezes its transaction's link for good (the session stays
   * idle in transaction, holding the key) and runs past its 400 ms time-out; `alsoOnFreeze` adds
   * to the fault and returns what undoes it. The session must be terminated, so that a retry
   * finds the key free: handled once, never dead-lettered.
   */
  const assertFrozenAttemptTerminated = async (
    suffix: string,
    alsoOnFreeze: (postgres: TcpProxy) => () => void,
  ) => {
    const name = f.name(suffix);
    const postgres = await proxy(DATABASE_URL);
    const db = dbThrough(postgres, 4);
    let undo = () => {};
    try {
      let froze = false;
      const def = f.definition(
        suffix,
        async (payload, ctx) => {
          await f.recordEffect(payload, ctx);
          if (!froze) {
            froze = true;
            postgres.blackholeOpen();
            undo = alsoOnFreeze(postgres);
          }
          await sql`SELECT 1`.execute(ctx.trx);
        },
        {
          routingKeys: [suffix],
          timeoutMs: 400,
          concurrency: 1,
          retry: { maxAttempts: 6, backoff: { initialMs: 100, maxMs: 400 } },
        },
      );
      const host = await f.host([def], { db });
      await f.publish(suffix, { id: 'x' }, { messageId: `${suffix}-x` });
      await waitFor(
        'the message settled',
        () => host.stats(name).handled + host.stats(name).deadLettered > 0,
        30_000,
      );
      const stats = host.stats(name);
      assert.equal(stats.deadLettered, 0, 'dead-lettered: its key stayed held');
      assert.equal(stats.handled, 1);
      await assertEveryEffectOnce(name, 1);
    } finally {
      undo();
      // The frozen attempt's rollback never answers: ending its link lets the host stop and
      // the pool end.
      postgres.resetAll();
      await f.stopHosts();
      await db.destroy();
    }
  };

  it("a timed-out transaction's link frozen while Postgres refuses connections: its session is terminated once Postgres answers, and the retry applies the effect once", async () => {
    await assertFrozenAttemptTerminated('frozen', (postgres) => {
      // Postgres refuses new connections for a while: the cancel and the first terminates
      // cannot be sent.
      postgres.refuse(true);
      const outage = setTimeout(() => postgres.refuse(false), 2_000);
      return () => clearTimeout(outage);
    });
  });

  it("the wall clock stepped forward while a timed-out transaction's link is frozen: its session is still terminated, and the retry applies the effect once", async (t) => {
    const wallClock = Date.now;
    await assertFrozenAttemptTerminated('clockstep', () => {
      // NTP steps the clock an hour forward: the terminate's age of the session must not grow.
      t.mock.method(Date, 'now', () => wallClock() + 3_600_000);
      return () => t.mock.restoreAll();
    });
  });

  it('a handler given up at the stop deadline on a frozen link: its session is terminated, and the next host applies the effect once', async () => {
    const name = f.name('stopfrozen');
    const postgres = await proxy(DATABASE_URL);
    const db = dbThrough(postgres, 4);
    let entered!: () => void;
    const running = new Promise<void>((resolve) => {
      entered = resolve;
    });
    try {
      const def = f.definition(
        'stopfrozen',
        async (payload, ctx) => {
          await f.recordEffect(payload, ctx);
          // The transaction's link goes silent: its session stays idle in transaction, holding
          // the key, and the rollback at the stop deadline never arrives.
          postgres.blackholeOpen();
          entered();
          await new Promise((resolve) => setTimeout(resolve, 5_000));
        },
        { routingKeys: ['stopfrozen'], timeoutMs: 2_000, concurrency: 1 },
      );
      const host = await f.host([def], { db, stopTimeoutMs: 200 });
      await f.publish('stopfrozen', { id: 'y' }, { messageId: 'stopfrozen-y' });
      await running;
      // Given up 200 ms into the stop, after running far less than its timeoutMs: the
      // terminate must still recognise the session as the handler's.
      await host.stop();
      const next = await f.host([
        f.definition('stopfrozen', f.recordEffect, {
          routingKeys: ['stopfrozen'],
          timeoutMs: 2_000,
          retry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 200 } },
        }),
      ]);
      await waitFor(
        'the message settled',
        () => next.stats(name).handled + next.stats(name).deadLettered > 0,
        30_000,
      );
      assert.equal(next.stats(name).deadLettered, 0, 'dead-lettered: its key stayed held');
      await assertEveryEffectOnce(name, 1);
    } finally {
      postgres.resetAll();
      await f.stopHosts();
      await db.destroy();
    }
  });

  it('re-declares and resumes when its queue is deleted under it', async () => {
    const name = f.name('deleted');
    const def = f.definition('deleted', f.recordEffect, { routingKeys: ['deleted'] });
    const host = await f.host([def]);
    await f.publish('deleted', { n: 1 }, { messageId: 'before' });
    await waitFor('the first message', () => host.stats(name).handled === 1);
    await f.channel.deleteQueue(name);
    await waitFor('the queue to be back with its consumer', async () => {
      const info = await f.queueInfo(name);
      return info !== undefined && info.consumerCount === 1;
    });
    await f.publish('deleted', { n: 2 }, { messageId: 'after' });
    await waitFor('the second message', () => host.stats(name).handled === 2);
  });
});
