// Uses outboxkit/testing the way an application's own test would: write in a transaction,
// flush the outbox, wait for the handlers, assert on the effects and on what was published.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { setTimeout as realDelay } from 'node:timers/promises';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf } from '../src/consumer/consumer-topology.js';
import { partitionSet } from '../src/consumer/partition-set.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { StateError } from '../src/errors/state-error.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { capturePublished } from '../src/testing/capture-published.js';
import { deleteConsumerQueues } from '../src/testing/delete-consumer-queues.js';
import { flushOutbox, OutboxFlushError } from '../src/testing/flush-outbox.js';
import { TestingTimeoutError } from '../src/testing/testing-timeout-error.js';
import { waitForIdle } from '../src/testing/wait-for-idle.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { freezeGlobalTimers } from './support/frozen-timers.js';
import { testRelay } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('outboxkit/testing', () => {
  let f: ConsumerFixture;
  let relay: OutboxRelay;
  let host: ConsumerHost;
  let outbox: OutboxWriter;
  before(async () => {
    f = await ConsumerFixture.open('thelp');
    outbox = new OutboxWriter({ schema: f.t.schema });
    // Retries on: the helper must wait through a failure and its delay queue, not stop at it.
    const invoice = f.definition(
      'invoice',
      async (payload, ctx) => {
        if ((payload as { flaky?: boolean }).flaky && ctx.attempt === 1) throw new Error('flaky');
        if ((payload as { poison?: boolean }).poison) throw new PermanentError('poison');
        await f.recordEffect(payload, ctx);
      },
      {
        routingKeys: ['order.*'],
        retry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 100 } },
      },
    );
    host = await f.host([invoice]);
    relay = testRelay(f.t);
    await relay.start();
  });
  after(async () => {
    await relay.stop();
    await f.close();
  });

  it('flushOutbox, then waitForIdle: every handler has run, retries included', async () => {
    const capture = await capturePublished(AMQP_URL, f.name('events'), 'order.placed');
    try {
      await f.t.db.transaction().execute(async (trx) => {
        for (let i = 0; i < 20; i += 1) {
          await outbox.add(trx, {
            exchange: f.name('events'),
            routingKey: 'order.placed',
            payload: { orderId: `o-${i}`, flaky: i === 7 },
            messageId: `order-${i}`,
          });
        }
        await outbox.add(trx, {
          exchange: f.name('events'),
          routingKey: 'order.cancelled',
          payload: { orderId: 'o-1' },
        });
      });
      await flushOutbox(f.t.pool, { schema: f.t.schema, relay });
      assert.equal(await f.t.count('outbox'), 0);
      await waitForIdle(host, { amqpUrl: AMQP_URL });

      // No polling of our own: the helpers returned after the last commit.
      assert.equal(await f.effectCount(), 21);
      assert.equal(host.stats(f.name('invoice')).retried, 1);
      const published = await capture.waitFor(20);
      assert.deepEqual(
        published.map((m) => m.messageId).sort(),
        Array.from({ length: 20 }, (_, i) => `order-${i}`).sort(),
      );
      assert.equal(published[0]!.routingKey, 'order.placed');
      assert.ok((published[0]!.payload as { orderId: string }).orderId.startsWith('o-'));
      // The binding pattern kept order.cancelled out.
      assert.equal(capture.messages.length, 20);
    } finally {
      await capture.close();
    }
  });

  it("flushOutbox watches the relay's schema when none is given, and refuses another", async () => {
    await f.t.db.transaction().execute((trx) =>
      outbox.add(trx, {
        exchange: f.name('events'),
        routingKey: 'order.placed',
        payload: { orderId: 'later' },
        delayMs: 300,
      }),
    );
    await assert.rejects(
      flushOutbox(f.t.pool, { schema: 'outboxkit', relay }),
      (error: unknown) =>
        error instanceof ConfigurationError &&
        error.option === 'schema' &&
        error.message.includes(`the relay publishes the outbox of schema "${f.t.schema}"`),
    );
    // Without `schema`, the relay's: it returns once the delayed row is published, not at once.
    await flushOutbox(f.t.pool, { relay });
    assert.equal(await f.t.count('outbox'), 0);
    await waitForIdle(host, { amqpUrl: AMQP_URL });
    // The host names its consumers when asked for one it does not have.
    assert.throws(
      () => host.stats('invoice'),
      (error: unknown) =>
        error instanceof ConfigurationError &&
        error.message.includes(`its consumers are "${f.name('invoice')}"`),
    );
  });

  it('a dead-lettered message counts as handled for waitForIdle', async () => {
    const before = host.stats(f.name('invoice')).deadLettered;
    await f.t.db.transaction().execute((trx) =>
      outbox.add(trx, {
        exchange: f.name('events'),
        routingKey: 'order.placed',
        payload: { orderId: 'bad', poison: true },
      }),
    );
    await flushOutbox(f.t.pool, { schema: f.t.schema });
    await waitForIdle(host, { amqpUrl: AMQP_URL });
    assert.equal(host.stats(f.name('invoice')).deadLettered, before + 1);
  });

  it("waitForIdle's time-out names a handler's last failure, which the host keeps", async () => {
    // A handler that always throws, its retry an hour away: the message waits in a delay queue.
    const broken = f.definition(
      'broken',
      async () => {
        throw new TypeError('cannot read properties of undefined (reading total)');
      },
      { routingKeys: ['broken.*'], retry: { maxAttempts: 2, backoff: { initialMs: 3_600_000 } } },
    );
    const brokenHost = await f.host([broken]);
    assert.equal(brokenHost.lastFailure(f.name('broken')), undefined);
    await f.t.db.transaction().execute((trx) =>
      outbox.add(trx, {
        exchange: f.name('events'),
        routingKey: 'broken.placed',
        payload: { orderId: 'b-1' },
        messageId: 'order-b-1',
      }),
    );
    await flushOutbox(f.t.pool, { schema: f.t.schema });
    await waitFor('the retry', async () => brokenHost.stats(f.name('broken')).retried === 1);
    const failure = brokenHost.lastFailure(f.name('broken'));
    assert.ok(failure !== undefined);
    assert.ok(failure.error instanceof TypeError);
    assert.equal(failure.attempt, 1);
    assert.equal(failure.next, 'retry');
    assert.equal(failure.businessKey, 'order-b-1');
    assert.ok(Object.isFrozen(failure));
    await assert.rejects(
      waitForIdle(brokenHost, { amqpUrl: AMQP_URL, timeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof TestingTimeoutError, String(error));
        assert.match(
          error.message,
          /in \S+\.retry\.3600000ms\), 0 in the host; last handler failure of \S+broken, \d+\.\d s ago, attempt 1 of key "order-b-1" \(to be retried\): TypeError: cannot read properties of undefined \(reading total\)/,
        );
        return true;
      },
    );
    await brokenHost.stop();
  });

  it('flushOutbox fails loudly when a row is parked instead of published', async () => {
    const orphan = await f.broker.exchange('orphan');
    await f.t.db
      .transaction()
      .execute((trx) => outbox.add(trx, { exchange: orphan, routingKey: 'nobody', payload: {} }));
    await f.t.db.transaction().execute((trx) =>
      outbox.add(trx, {
        exchange: orphan,
        routingKey: 'nobody.else',
        payload: {},
        messageId: 'orphan-2',
      }),
    );
    await assert.rejects(flushOutbox(f.t.pool, { schema: f.t.schema }), (error: unknown) => {
      assert.ok(error instanceof OutboxFlushError);
      assert.match(error.reasons[0]!, /^unroutable/);
      // Which rows, so that a test can tell whose write it was (it said only the reasons).
      assert.equal(error.rows.length, 2);
      assert.deepEqual(error.rows[1], {
        messageId: 'orphan-2',
        exchange: orphan,
        routingKey: 'nobody.else',
        reason: error.reasons[1],
      });
      assert.match(
        error.message,
        new RegExp(
          `message "orphan-2" to exchange "${orphan}" with routing key "nobody.else": unroutable`,
        ),
      );
      return true;
    });
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox_parked`);
  });

  it('flushOutbox reports a row the relay parked before the flush was called, once', async () => {
    const orphan = await f.broker.exchange('orphan-early');
    await f.t.db
      .transaction()
      .execute((trx) => outbox.add(trx, { exchange: orphan, routingKey: 'nobody', payload: {} }));
    // The relay is quicker than the test: parked before flushOutbox looks.
    await waitFor('the row parked', async () => (await f.t.count('outbox_parked')) === 1);
    await assert.rejects(flushOutbox(f.t.pool, { schema: f.t.schema, relay }), (error: unknown) => {
      assert.ok(error instanceof OutboxFlushError, String(error));
      assert.match(error.reasons[0]!, /^unroutable/);
      return true;
    });
    // Reported by the flush after its write; not again by the next one.
    await flushOutbox(f.t.pool, { schema: f.t.schema, relay });
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox_parked`);
  });

  it('flushOutbox says when the rows it waits for are not due yet', async () => {
    await f.t.db.transaction().execute((trx) =>
      outbox.add(trx, {
        exchange: f.name('events'),
        routingKey: 'order.later',
        payload: {},
        delayMs: 60_000,
      }),
    );
    await assert.rejects(
      flushOutbox(f.t.pool, { schema: f.t.schema, relay, timeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof TestingTimeoutError, String(error));
        assert.match(
          error.message,
          /1 row\(s\) still pending, 1 of them not due until \d{4}-\d\d-\d\dT[\d:]+Z \(written with delayMs/,
        );
        assert.doesNotMatch(error.message, /is a relay running/);
        return true;
      },
    );
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox`);
  });

  it('waitForIdle refuses at once a host whose queues do not exist', async () => {
    const notStarted = {
      consumers: [],
      queues: [f.name('never-declared-queue')],
      inFlight: 0,
      stats: () => ({ received: 0 }),
    };
    const began = Date.now();
    await assert.rejects(
      waitForIdle(notStarted, { amqpUrl: AMQP_URL, timeoutMs: 5000 }),
      (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'idle-queue-not-found');
        assert.match(error.message, /does not exist in virtual host "\/": start the host/);
        return true;
      },
    );
    assert.ok(Date.now() - began < 2000, `refused after ${Date.now() - began} ms`);
  });

  it('times out naming the last error when the exchange was never declared', async () => {
    const missing = f.name('never-declared');
    await f.t.db
      .transaction()
      .execute((trx) => outbox.add(trx, { exchange: missing, routingKey: 'x', payload: {} }));
    // The relay's first try, so that the time-out below has an error to name however slow it is.
    await waitFor('the relay to record its error', async () => {
      const { rows } = await f.t.pool.query(
        `SELECT 1 FROM "${f.t.schema}".outbox WHERE last_error IS NOT NULL`,
      );
      return rows.length > 0;
    });
    await assert.rejects(
      flushOutbox(f.t.pool, { schema: f.t.schema, relay, timeoutMs: 1500 }),
      (error: unknown) => {
        assert.ok(error instanceof TestingTimeoutError);
        assert.match(error.message, /1 row\(s\) still pending, last error: exchange not found: /);
        assert.ok(error.message.includes(missing), error.message);
        return true;
      },
    );
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox`);
  });

  it('times out with what is still pending when no relay runs', async () => {
    const writer = new OutboxWriter({ schema: f.t.schema });
    await relay.stop();
    await f.t.db
      .transaction()
      .execute((trx) =>
        writer.add(trx, { exchange: f.name('events'), routingKey: 'order.placed', payload: {} }),
      );
    await assert.rejects(
      flushOutbox(f.t.pool, { schema: f.t.schema, timeoutMs: 100 }),
      (error: unknown) =>
        error instanceof TestingTimeoutError && /1 row\(s\) still pending/.test(error.message),
    );
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox`);
  });

  it('waitForIdle times out naming the queues that still hold messages', async () => {
    const held = await f.broker.queue('held.retry.16000ms');
    f.broker.channel.sendToQueue(held, Buffer.from('{}'));
    await f.broker.waitForDepth(held, 1);
    // What waitForIdle reads of a host, on a real queue: one message waits in it.
    const waiting = { consumers: [], queues: [held], inFlight: 0, stats: () => ({ received: 0 }) };
    await assert.rejects(
      waitForIdle(waiting, { amqpUrl: AMQP_URL, timeoutMs: 300 }),
      (error: unknown) =>
        error instanceof TestingTimeoutError &&
        error.message.includes(`1 message(s) in queues (1 in ${held}), 0 in the host`),
    );
  });

  it('capturePublished names a missing exchange', async () => {
    await assert.rejects(
      capturePublished(AMQP_URL, f.name('no-such-exchange')),
      /does not exist\. Declare it first/,
    );
  });

  it('capturePublished takes a list of nodes, keeps the correlation id and time, and ends a wait at close', async () => {
    const deadNode = 'amqp://guest:guest@127.0.0.1:1';
    const capture = await capturePublished([deadNode, AMQP_URL], f.name('events'), 'order.*');
    // An earlier test stopped the suite's relay.
    const running = testRelay(f.t);
    await running.start();
    try {
      await f.t.db.transaction().execute((trx) =>
        outbox.add(trx, {
          exchange: f.name('events'),
          routingKey: 'order.noted',
          payload: { orderId: 'c-1' },
          correlationId: 'corr-c-1',
        }),
      );
      await flushOutbox(f.t.pool, { relay: running });
      const [message] = await capture.waitFor(1);
      assert.equal(message!.correlationId, 'corr-c-1');
      assert.ok(
        typeof message!.timestamp === 'number' &&
          Math.abs(message!.timestamp - Date.now()) < 60_000,
      );
    } finally {
      await running.stop();
      await capture.close();
    }
    // A wait after the close, or during it, cannot be met: said at once, not at its time-out.
    const began = Date.now();
    await assert.rejects(capture.waitFor(2, { timeoutMs: 5000 }), (error: unknown) => {
      assert.ok(error instanceof StateError, String(error));
      assert.match(error.message, /the capture is closed, with 1 of 2 message\(s\)/);
      return true;
    });
    assert.ok(Date.now() - began < 1000, `refused after ${Date.now() - began} ms`);
  });

  it('the helpers name a virtual host RabbitMQ refuses, and waitForIdle refuses a stopped host', async () => {
    const noVhost = `${AMQP_URL}/no_such_vhost_${process.pid}`;
    for (const attempt of [
      () => capturePublished(noVhost, f.name('events')),
      () => waitForIdle(host, { amqpUrl: noVhost }),
    ]) {
      await assert.rejects(attempt(), /refused the virtual host "no_such_vhost_\d+"/);
    }
    const stopped = await f.host([f.definition('idle-stopped', f.recordEffect)]);
    await stopped.stop();
    const began = Date.now();
    await assert.rejects(
      waitForIdle(stopped, { amqpUrl: [AMQP_URL], timeoutMs: 5000 }),
      (error: unknown) => {
        assert.ok(error instanceof StateError, String(error));
        assert.match(error.message, /the host is not running/);
        return true;
      },
    );
    assert.ok(Date.now() - began < 1000, `refused after ${Date.now() - began} ms`);
  });

  it('deleteConsumerQueues removes what a stopped host declared, partitions included', async () => {
    const plain = f.definition('cleanup-plain', f.recordEffect, {
      retry: { maxAttempts: 3, backoff: { initialMs: 100, maxMs: 200 } },
    });
    const split = f.definition('cleanup-split', f.recordEffect, { ordered: true, partitions: 2 });
    const started = await f.host([plain, split]);
    const queues = [...started.queues];
    await started.stop();
    const deleted = await deleteConsumerQueues([AMQP_URL], [plain, topologyOf(split)]);
    for (const q of [
      ...queues,
      `${f.name('cleanup-plain')}.dlq`,
      `${f.name('cleanup-split')}.dlq`,
    ]) {
      assert.ok(deleted.includes(q), `${q} deleted`);
      assert.equal(await f.queueInfo(q), undefined, `${q} is gone`);
    }
    assert.ok(deleted.includes(`${f.name('cleanup-plain')}.retry.200ms`), 'the delay queues too');
    const set = partitionSet(f.name('cleanup-split'), 2);
    assert.equal(await f.broker.exchangeExists(set.exchange), false);
    assert.deepEqual(await deleteConsumerQueues(AMQP_URL, [plain]), [], 'nothing left to delete');
  });

  // Jest's and Vitest's fake timers replace the global timers, `performance.now` and `Date.now`.
  // The AMQP socket's cork, uncorked on the global setImmediate, stayed corked: nothing was
  // published until the publish timed out; the writer's NOTIFY throttle and the helpers' deadlines
  // read the frozen clock, so later writes woke no relay and the helpers never timed out.
  it("goes on under a test runner's fake timers: publishing, handling, the helpers' time limits", async () => {
    // Started before the timers are faked, as an application in a `beforeAll`.
    const running = testRelay(f.t);
    await running.start();
    const restore = freezeGlobalTimers();
    try {
      const within = <T>(what: string, promise: Promise<T>) =>
        Promise.race([
          promise,
          realDelay(15_000).then(() => {
            throw new Error(`${what}: still waiting after 15 s`);
          }),
        ]);
      const before = await f.effectCount();
      for (const n of [1, 2, 3]) {
        await f.t.db.transaction().execute((trx) =>
          outbox.add(trx, {
            exchange: f.name('events'),
            routingKey: 'order.placed',
            payload: { orderId: `fake-${n}` },
          }),
        );
      }
      // No relay given: only the writer's NOTIFY or the relay's own poll wakes it.
      await within('flushOutbox', flushOutbox(f.t.pool, { schema: f.t.schema, timeoutMs: 10_000 }));
      await within('waitForIdle', waitForIdle(host, { amqpUrl: AMQP_URL, timeoutMs: 10_000 }));
      assert.equal((await f.effectCount()) - before, 3);
      // A row not due for a minute: the helper's own time limit ends the wait.
      await f.t.db.transaction().execute((trx) =>
        outbox.add(trx, {
          exchange: f.name('events'),
          routingKey: 'order.placed',
          payload: { orderId: 'fake-later' },
          delayMs: 60_000,
        }),
      );
      const started = performance.now();
      await within(
        'the time-out',
        assert.rejects(flushOutbox(f.t.pool, { schema: f.t.schema, timeoutMs: 300 })),
      );
      assert.ok(performance.now() - started < 5_000);
    } finally {
      restore();
      await running.stop();
      await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox`);
    }
  });

  it('flushOutbox refuses an undefined relay without a schema (a Nest module not initialised)', async () => {
    await assert.rejects(flushOutbox(f.t.pool, { relay: undefined }), (error: unknown) => {
      assert.ok(error instanceof ConfigurationError, String(error));
      assert.match(error.message, /app\.init\(\)/);
      return true;
    });
    const running = testRelay(f.t);
    await running.start();
    try {
      await flushOutbox(f.t.pool, { relay: undefined, schema: f.t.schema });
    } finally {
      await running.stop();
    }
  });
});
