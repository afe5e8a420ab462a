import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { DeadLetterNotFoundError } from '../src/dead-letters/dead-letter-not-found-error.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { DeadLetterScanInterruptedError } from '../src/dead-letters/dead-letter-scan-interrupted-error.js';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OUTBOXKIT_HEADERS, REPLAYED_AT_HEADER } from '../src/protocol/dead-letter-headers.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

describe('dead letters: parked outbox rows', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('dlpark');
  });
  after(() => f.close());

  it('a parked row replays into the outbox with its ids, and the relay publishes it', async () => {
    const { t, broker } = f;
    const exchange = await broker.exchange('parked');
    const relay = testRelay(t);
    await relay.start();
    try {
      // Nothing is bound yet: both rows are unroutable and get parked.
      await writeMessages(t, [
        { exchange, routingKey: 'a', payload: { n: 1 }, messageId: 'p-1', orderingKey: 'k1' },
        { exchange, routingKey: 'b', payload: { n: 2 }, messageId: 'p-2' },
      ]);
      await waitFor('two parked rows', async () => (await t.count('outbox_parked')) === 2);
      const parked = new ParkedMessages({ pool: t.pool, schema: t.schema });

      const listed = await parked.list({ reason: 'UNROUTABLE', exchange });
      assert.deepEqual(
        listed.map((m) => [m.messageId, m.routingKey, m.orderingKey]),
        [
          ['p-1', 'a', 'k1'],
          ['p-2', 'b', null],
        ],
      );
      assert.match(listed[0]!.reason, /^unroutable/);
      assert.equal((await parked.list({ reason: 'no such reason' })).length, 0);
      assert.equal((await parked.list({ olderThanMs: 3_600_000 })).length, 0);
      assert.equal((await parked.list({ newerThanMs: 3_600_000 })).length, 2);
      // Over the bigint range: refused by outboxkit, not failed by Postgres (22003).
      const overRange = '9999999999999999999';
      await assert.rejects(parked.show(overRange), ConfigurationError);
      await assert.rejects(parked.replayOne(overRange), ConfigurationError);
      await assert.rejects(parked.purgeOne(overRange), ConfigurationError);
      const shown = await parked.show(listed[0]!.id);
      assert.deepEqual(JSON.parse(shown.payload.toString()), { n: 1 });

      const queue = await broker.queue('parked-q', exchange, '#');
      await parked.replayOne(listed[0]!.id);
      const [message] = await waitForMessages(f, queue, 1);
      assert.equal(message!.properties.messageId, 'p-1');
      assert.equal(message!.properties.headers?.[ORDERING_KEY_HEADER], 'k1');
      assert.deepEqual(payloadOf(message!), { n: 1 });
      await assert.rejects(parked.replayOne(listed[0]!.id), DeadLetterNotFoundError);
      assert.deepEqual(
        (await parked.list()).map((m) => m.messageId),
        ['p-2'],
      );

      const purged = await parked.purge({ messageId: 'p-2' });
      assert.equal(purged.done, 1);
      assert.equal(await t.count('outbox_parked'), 0);
      await waitFor('the outbox to be empty', async () => (await t.count('outbox')) === 0);
      // Counted once the batch's COMMIT came back, a moment after other sessions see it.
      await waitFor('the publish counted', () => relay.stats().published >= 1);
      assert.equal(relay.stats().published, 1);
    } finally {
      await relay.stop();
    }
  });

  it('replays by filter in chunks, reporting progress, with attempts reset', async () => {
    const { t, broker } = f;
    const exchange = await broker.exchange('bulk');
    // Park rows directly, as the relay would have after giving up on them.
    await writeMessages(
      t,
      Array.from({ length: 25 }, (_, i) => ({
        exchange,
        routingKey: 'r',
        payload: { i },
        messageId: `bulk-${i}`,
      })),
    );
    await t.pool.query(`UPDATE "${t.schema}".outbox SET attempts = 10, last_error = 'boom'`);
    await parkOutboxRows(t, 'gave up after 10 attempts: boom');
    const parked = new ParkedMessages({ pool: t.pool, schema: t.schema });
    assert.equal(await parked.count({ reason: 'gave up' }), 25);
    const progress: number[] = [];
    const result = await parked.replay(
      { reason: 'gave up' },
      { chunkSize: 10, onProgress: (done) => progress.push(done) },
    );
    assert.deepEqual(result, { done: 25, failed: [] });
    assert.deepEqual(progress, [10, 20, 25]);
    const { rows } = await t.pool.query(
      `SELECT message_id, attempts, last_error FROM "${t.schema}".outbox ORDER BY id`,
    );
    assert.equal(rows.length, 25);
    assert.ok(rows.every((r) => r.attempts === 0 && r.last_error === null));
    assert.equal(rows[0].message_id, 'bulk-0');
    await t.pool.query(`DELETE FROM "${t.schema}".outbox`);
  });

  // pg reads a bytea as hex text, which a JS string holds only to ~268 MB of payload: show()
  // of a larger parked row (the relay parks such rows written by SQL) threw.
  it('shows a parked row whatever the size of its payload', async () => {
    const { t } = f;
    const bytes = 300_000_003;
    // Compressible, so Postgres stores it in a few MB.
    const { rows } = await t.pool.query(
      `INSERT INTO "${t.schema}".outbox_parked
         (id, message_id, exchange, routing_key, payload, content_type, created_at, attempts, reason)
       VALUES (424242, 'huge', 'x', 'k',
               convert_to('<' || repeat('ab', ${(bytes - 3) / 2}) || '=>', 'UTF8'),
               'application/octet-stream', now(), 0, 'too large')
       RETURNING id::text AS id`,
    );
    try {
      const shown = await new ParkedMessages({ pool: t.pool, schema: t.schema }).show(rows[0].id);
      assert.equal(shown.payloadBytes, bytes);
      assert.equal(shown.payload.length, bytes);
      assert.equal(shown.payload.subarray(0, 5).toString(), '<abab');
      assert.equal(shown.payload.subarray(bytes - 5).toString(), 'abab=>'.slice(1));
      assert.equal(shown.payload.subarray(134_217_727, 134_217_729).toString(), 'ab');
    } finally {
      await t.pool.query(`DELETE FROM "${t.schema}".outbox_parked WHERE id = 424242`);
    }
  });
});

describe('dead letters: a consumer dead-letter queue', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('dlq');
  });
  after(() => f.close());

  it('lists without losing, replays once, and a second replay of the same message is deduped', async () => {
    const name = f.name('billing');
    let broken = true;
    const seen: ConsumeContext[] = [];
    const def = f.definition(
      'billing',
      async (payload, ctx) => {
        if (broken) throw new PermanentError('customer missing');
        seen.push(ctx);
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['order.placed'] },
    );
    const host = await f.host([def]);
    const dlqName = deadLetterQueueName(name);
    // Two copies of one message (a publisher retry, say): both fail and are dead-lettered.
    await f.publish('order.placed', { orderId: 'o-1' }, { messageId: 'm-1' });
    await f.publish('order.placed', { orderId: 'o-1' }, { messageId: 'm-1' });
    await f.publish('order.placed', { orderId: 'o-2' }, { messageId: 'm-2' });
    await waitFor('three dead letters', () => host.stats(name).deadLettered === 3);
    await f.waitForDepth(dlqName, 3);

    const dlq = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: name });
    try {
      const listed = await dlq.list({ reason: 'customer missing' });
      // The handlers run concurrently, so the dead letters may be in any order.
      assert.deepEqual(
        listed.map((d) => [d.messageId, d.reason, d.exchange, d.routingKey, d.consumer]).sort(),
        [
          ['m-1', 'permanent-error', f.name('events'), 'order.placed', name],
          ['m-1', 'permanent-error', f.name('events'), 'order.placed', name],
          ['m-2', 'permanent-error', f.name('events'), 'order.placed', name],
        ],
      );
      assert.ok(listed[0]!.deadAt instanceof Date);
      assert.equal((await dlq.list({ olderThanMs: 3_600_000 })).length, 0);
      assert.equal((await dlq.list({}, { limit: 1 })).length, 1);
      // Reading took nothing away, and kept the order.
      assert.equal(await f.depth(dlqName), 3);
      assert.deepEqual(
        (await dlq.list()).map((d) => d.messageId),
        listed.map((d) => d.messageId),
      );
      const shown = await dlq.show('m-2');
      assert.deepEqual(JSON.parse(shown.payload.toString()), { orderId: 'o-2' });
      assert.equal(await f.depth(dlqName), 3);
      await assert.rejects(dlq.show('nope'), DeadLetterNotFoundError);

      broken = false;
      await dlq.replayOne('m-1');
      await waitFor('the replay to be handled', () => host.stats(name).handled === 1);
      const ctx = seen[0]!;
      assert.equal(ctx.attempt, 1, 'a replay starts with fresh attempts');
      assert.equal(ctx.messageId, 'm-1');
      assert.equal(ctx.exchange, f.name('events'), 'the handler still sees the original exchange');
      assert.equal(ctx.routingKey, 'order.placed');
      assert.equal(ctx.headers[OUTBOXKIT_HEADERS.reason], undefined);
      assert.equal(ctx.headers[OUTBOXKIT_HEADERS.attempts], undefined);
      assert.equal(typeof ctx.headers[REPLAYED_AT_HEADER], 'string');
      assert.equal(await f.depth(dlqName), 2);

      // The second copy of m-1: same message id, so the consumer's dedupe row absorbs it.
      await dlq.replayOne('m-1');
      await waitFor('the duplicate to be suppressed', () => host.stats(name).duplicates === 1);
      assert.deepEqual(
        (await f.effects()).map((e) => e.key),
        ['m-1'],
      );

      // m-2 through the original exchange and routing key, by filter.
      const result = await dlq.replay({ messageId: 'm-2' }, { to: 'exchange' });
      assert.deepEqual(result, { done: 1, failed: [] });
      await waitFor('m-2 to be handled', () => host.stats(name).handled === 2);
      assert.equal(seen[1]!.exchange, f.name('events'));
      assert.equal(seen[1]!.headers[OUTBOXKIT_HEADERS.originalExchange], undefined);
      assert.equal(await f.depth(dlqName), 0);
      assert.deepEqual(
        (await f.effects()).map((e) => e.key),
        ['m-1', 'm-2'],
      );
    } finally {
      await dlq.close();
    }
  });

  it('a replay that cannot be routed leaves the dead letter in place; purge removes it', async () => {
    const name = f.name('orphan');
    const def = f.definition(
      'orphan',
      async () => {
        throw new PermanentError('always');
      },
      { routingKeys: ['orphan'] },
    );
    const host = await f.host([def]);
    await f.publish('orphan', { x: 1 }, { messageId: 'o-1' });
    await waitFor('a dead letter', () => host.stats(name).deadLettered === 1);
    await f.stopHosts();
    // The consumer's queue is gone: nothing to replay to, and the failure says so.
    await f.channel.deleteQueue(name);
    const dlq = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: name });
    try {
      await f.waitForDepth(deadLetterQueueName(name), 1);
      const result = await dlq.replay({});
      assert.equal(result.done, 0);
      assert.equal(result.failed.length, 1);
      assert.match(result.failed[0]!.error, /does not exist/);
      assert.equal(await dlq.depth(), 1);
      assert.deepEqual(await dlq.purge({ reason: 'always' }), { done: 1, failed: [] });
      assert.equal(await dlq.depth(), 0);
    } finally {
      await dlq.close();
    }
  });

  it('a replay cut short by a lost connection says how far it got, typed, and loses nothing', async () => {
    const name = f.name('cut');
    const def = f.definition(
      'cut',
      async () => {
        throw new PermanentError('always');
      },
      { routingKeys: ['cut'] },
    );
    const host = await f.host([def]);
    const count = 30;
    for (let i = 0; i < count; i += 1) await f.publish('cut', { i }, { messageId: `cut-${i}` });
    await waitFor('the dead letters', () => host.stats(name).deadLettered === count);
    await f.stopHosts();
    const { hostname, port } = new URL(AMQP_URL);
    const proxy = await TcpProxy.start(hostname, Number(port || 5672));
    const dlq = new DeadLetterQueue({ amqpUrl: proxy.url(AMQP_URL), queue: name });
    try {
      await assert.rejects(
        dlq.replay(
          {},
          {
            onProgress: (done) => {
              if (done === 5) proxy.resetAll();
            },
          },
        ),
        (error: unknown) => {
          assert.ok(error instanceof DeadLetterScanInterruptedError, String(error));
          assert.equal(error.code, 'dead-letter-scan-interrupted');
          assert.equal(error.done, 5);
          assert.match(error.message, /stopped after 5 replayed.*run it again/s);
          return true;
        },
      );
      // Every one is in the dead-letter queue or back in the consumer's queue, none lost.
      const counts = async () => ({
        dead: (await f.queueInfo(deadLetterQueueName(name)))?.messageCount ?? 0,
        back: (await f.queueInfo(name))?.messageCount ?? 0,
      });
      const { back } = await waitFor('every message in one queue or the other', async () => {
        const c = await counts();
        return c.dead + c.back >= count ? c : undefined;
      });
      assert.ok(back >= 5, `${back} replayed`);
    } finally {
      await dlq.close();
      await proxy.close();
    }
  });
});

/** Waits for `count` messages in `queue` and takes them. */
async function waitForMessages(f: ConsumerFixture, queue: string, count: number) {
  await f.broker.waitForDepth(queue, count);
  return f.drain(queue);
}
