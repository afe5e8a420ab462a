import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('idempotent consumer: invalid messages', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cinv');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  it('dead-letters malformed, mistyped and incomplete messages at once, and keeps going', async () => {
    const name = f.name('strict');
    let handlerCalls = 0;
    const def = f.definition<{ amount: number }>(
      'strict',
      async (payload, ctx) => {
        handlerCalls += 1;
        await f.recordEffect(payload, ctx);
      },
      {
        routingKeys: ['strict'],
        // One at a time: a message requeued by mistake would come back before the next one,
        // so counting deliveries when the sentinel is done proves there was no loop.
        concurrency: 1,
        prefetch: 1,
        requiredHeaders: ['x-tenant'],
        validate: (payload) => {
          const amount = (payload as { amount?: unknown }).amount;
          if (typeof amount !== 'number') throw new RangeError('amount must be a number');
          return { amount };
        },
      },
    );
    const host = await f.host([def]);
    const ok = { 'x-tenant': 't1' };
    const bad: Array<{ id: string; body: Buffer | object; options: object; reason: string }> = [
      {
        id: 'json',
        body: Buffer.from('{"amount": 1'),
        options: { headers: ok },
        reason: 'invalid-json',
      },
      // Bytes that are not UTF-8 reached the handler as U+FFFD, a payload nobody sent (a probe).
      {
        id: 'utf8',
        body: Buffer.concat([
          Buffer.from('{"amount": 1, "note": "'),
          Buffer.from([0xff, 0xfe]),
          Buffer.from('"}'),
        ]),
        options: { headers: ok },
        reason: 'invalid-json',
      },
      {
        id: 'type',
        body: Buffer.from('amount=1'),
        options: { contentType: 'text/plain', headers: ok },
        reason: 'unsupported-content-type',
      },
      { id: 'header', body: { amount: 1 }, options: {}, reason: 'missing-header' },
      {
        id: 'invalid',
        body: { amount: 'one' },
        options: { headers: ok },
        reason: 'validation-failed',
      },
      {
        id: 'gzip',
        body: { amount: 1 },
        options: { contentEncoding: 'gzip', headers: ok },
        reason: 'unsupported-content-encoding',
      },
    ];
    for (const m of bad) await f.publish('strict', m.body, { messageId: m.id, ...m.options });
    // No message id and no businessKey function: nothing to deduplicate by.
    await f.publish('strict', { amount: 1 }, { headers: ok });
    await f.publish('strict', { amount: 5 }, { messageId: 'sentinel', headers: ok });

    await waitFor('the sentinel to be handled', () => host.stats(name).handled === 1);
    const stats = host.stats(name);
    assert.equal(stats.received, bad.length + 2, 'each message was delivered exactly once');
    assert.equal(stats.redelivered, 0);
    assert.equal(stats.deadLettered, bad.length + 1);
    assert.equal(stats.failures, 0);
    assert.equal(handlerCalls, 1);
    assert.equal(await f.depth(name), 0);

    const dead = await f.drain(deadLetterQueueName(name));
    const reasons = Object.fromEntries(
      dead.map((m) => [
        m.properties.messageId ?? '(none)',
        m.properties.headers?.[OUTBOXKIT_HEADERS.reason],
      ]),
    );
    assert.deepEqual(reasons, {
      ...Object.fromEntries(bad.map((m) => [m.id, m.reason])),
      '(none)': 'missing-message-id',
    });
    const invalid = dead.find((m) => m.properties.messageId === 'invalid')!;
    assert.equal(invalid.properties.headers?.[OUTBOXKIT_HEADERS.error], 'amount must be a number');
    assert.equal(invalid.properties.headers?.[OUTBOXKIT_HEADERS.errorName], 'RangeError');
    assert.equal(invalid.properties.headers?.[OUTBOXKIT_HEADERS.attempts], 0);
    const header = dead.find((m) => m.properties.messageId === 'header')!;
    assert.match(String(header.properties.headers?.[OUTBOXKIT_HEADERS.error]), /x-tenant/);
    // The body travels unchanged, so the message can be fixed and replayed.
    assert.equal(
      dead.find((m) => m.properties.messageId === 'json')!.content.toString(),
      '{"amount": 1',
    );
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(
      effects.map((e) => e.key),
      ['sentinel'],
    );
  });

  it('dead-letters what a validator returns that cannot be the payload: undefined, or a boolean for an object', async () => {
    const name = f.name('returns');
    const seen: unknown[] = [];
    const def = f.definition<unknown>(
      'returns',
      async (payload, ctx) => {
        seen.push(payload);
        await f.recordEffect(payload, ctx);
      },
      {
        routingKeys: ['returns'],
        concurrency: 1,
        // What plain JavaScript, or a type guard passed where a parser belongs, gives.
        validate: (payload) => {
          const { mode } = payload as { mode: string };
          if (mode === 'forgot-return') return undefined;
          if (mode === 'guard') return true;
          return payload;
        },
      },
    );
    const host = await f.host([def]);
    await f.publish('returns', { mode: 'forgot-return' }, { messageId: 'undefined' });
    await f.publish('returns', { mode: 'guard' }, { messageId: 'boolean' });
    await f.publish('returns', { mode: 'fine' }, { messageId: 'fine' });
    await waitFor(
      'one handled, two dead-lettered',
      () => host.stats(name).handled === 1 && host.stats(name).deadLettered === 2,
    );
    assert.deepEqual(seen, [{ mode: 'fine' }]);
    const dead = await waitFor('the two dead letters', async () => {
      const depth = await f.depth(deadLetterQueueName(name));
      return depth === 2 ? f.drain(deadLetterQueueName(name)) : undefined;
    });
    const error = (id: string) =>
      String(
        dead.find((m) => m.properties.messageId === id)?.properties.headers?.[
          OUTBOXKIT_HEADERS.error
        ],
      );
    assert.match(error('undefined'), /`validate` returned undefined: it must return the payload/);
    assert.match(error('boolean'), /`validate` returned true for a payload that is not a boolean/);
    for (const m of dead) {
      assert.equal(m.properties.headers?.[OUTBOXKIT_HEADERS.reason], 'validation-failed');
    }
  });

  it('passes payloads of other accepted content types as Buffers, and takes a missing one as JSON', async () => {
    const name = f.name('binary');
    const seen: unknown[] = [];
    const def = f.definition(
      'binary',
      async (payload, ctx) => {
        seen.push(Buffer.isBuffer(payload) ? `buffer:${payload.toString()}` : payload);
        await f.recordEffect(payload, ctx);
      },
      {
        routingKeys: ['binary'],
        concurrency: 1,
        contentTypes: ['application/octet-stream', 'application/json'],
      },
    );
    const host = await f.host([def]);
    await f.publish('binary', Buffer.from('raw'), {
      messageId: 'b1',
      contentType: 'application/octet-stream',
    });
    await f.publish(
      'binary',
      { j: 1 },
      { messageId: 'b2', contentType: 'Application/JSON; charset=utf-8' },
    );
    await f.publish('binary', { j: 2 }, { messageId: 'b3', contentType: undefined });
    await waitFor('three handled', () => host.stats(name).handled === 3);
    assert.deepEqual(seen, ['buffer:raw', { j: 1 }, { j: 2 }]);
  });

  // Two messages of a foreign publisher with the id '   ': the second was acked as a duplicate
  // of the first, without its effect. The writer refuses a blank id.
  it('dead-letters a blank message id as missing, where it would be the business key', async () => {
    const byId = f.definition('blank', f.recordEffect, { routingKeys: ['blank'] });
    const byField = f.definition<{ orderId: string }>('blankfield', f.recordEffect, {
      routingKeys: ['blank'],
      businessKey: (payload) => payload.orderId,
    });
    const host = await f.host([byId, byField]);
    for (const orderId of ['o-a', 'o-b']) {
      await f.publish('blank', { orderId }, { messageId: '   ' });
    }
    await f.publish('blank', { orderId: 'o-tab' }, { messageId: '\t\u00a0' });
    const name = f.name('blank');
    await f.waitForDepth(deadLetterQueueName(name), 3);
    await waitFor('the payload keys handled', () => host.stats(f.name('blankfield')).handled === 3);
    const dead = await f.drain(deadLetterQueueName(name));
    assert.deepEqual(
      dead.map((m) => m.properties.headers?.[OUTBOXKIT_HEADERS.reason]),
      ['missing-message-id', 'missing-message-id', 'missing-message-id'],
    );
    assert.match(
      String(dead[0]!.properties.headers?.[OUTBOXKIT_HEADERS.error]),
      /blank message id/,
    );
    assert.equal(host.stats(name).duplicates, 0);
    const effects = (await f.effects()).filter((e) => e.consumer.startsWith(name));
    assert.deepEqual(effects.map((e) => `${e.consumer} ${e.key}`).sort(), [
      `${f.name('blankfield')} o-a`,
      `${f.name('blankfield')} o-b`,
      `${f.name('blankfield')} o-tab`,
    ]);
  });
});
