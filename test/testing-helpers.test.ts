// Uses outboxkit/testing the way an application's own test would: write in a transaction,
// flush the outbox, wait for the handlers, assert on the effects and on what was published.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { capturePublished } from '../src/testing/capture-published.js';
import { flushOutbox, OutboxFlushError } from '../src/testing/flush-outbox.js';
import { TestingTimeoutError } from '../src/testing/testing-timeout-error.js';
import { waitForIdle } from '../src/testing/wait-for-idle.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
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

  it('flushOutbox fails loudly when a row is parked instead of published', async () => {
    const orphan = await f.broker.exchange('orphan');
    await f.t.db
      .transaction()
      .execute((trx) => outbox.add(trx, { exchange: orphan, routingKey: 'nobody', payload: {} }));
    await assert.rejects(flushOutbox(f.t.pool, { schema: f.t.schema }), (error: unknown) => {
      assert.ok(error instanceof OutboxFlushError);
      assert.match(error.reasons[0]!, /^unroutable/);
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
});
