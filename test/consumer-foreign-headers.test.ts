import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { DROPPED_HEADERS_HEADER, OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { ForeignPublisher } from './support/foreign-publisher.js';
import { waitFor } from './support/wait-for.js';

/** How a Java or .NET client sends a nested table with a key `!`: amqplib does for an inherited one. */
const bangTable = (bang: unknown, rest: object) =>
  Object.assign(Object.create({ '!': bang }), rest);

/**
 * Headers amqplib decodes and then cannot encode again. A retry or dead-letter copy of such a
 * message was never taken, and the message went back to its queue about once a second for
 * ever, never dead-lettered ("Unknown type to encode: java", "out of range").
 */
const UNENCODABLE = {
  meta: bangTable('java', { value: 1 }),
  list: [bangTable(bangTable('x', {}), { k: 'v' })],
  t: { '!': 'timestamp', value: '18446744073709551615' },
  when: { '!': 'timestamp', value: 1700000000 },
  price: { '!': 'decimal', value: { places: 2, digits: 12345 } },
  fraction: { '!': 'double', value: 2 ** 50 + 0.5 },
  negative: { '!': 'double', value: -1e20 },
};

describe('idempotent consumer: copies of messages with foreign headers', () => {
  let f: ConsumerFixture;
  let foreign: ForeignPublisher;
  before(async () => {
    f = await ConsumerFixture.open('cforeign');
    foreign = await ForeignPublisher.open();
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(async () => {
    await foreign.close();
    await f.close();
  });

  it('retries and dead-letters them, each header copied as the AMQP type it came as', async () => {
    const name = f.name('types');
    const seen: Array<Readonly<Record<string, unknown>>> = [];
    const def = f.definition(
      'types',
      async (_payload, ctx: ConsumeContext) => {
        seen.push(ctx.headers);
        throw new Error('fails always');
      },
      { routingKeys: ['types'], retry: { maxAttempts: 2, backoff: { initialMs: 20 } } },
    );
    const host = await f.host([def]);
    await f.publish('types', { n: 1 }, { messageId: 'types-1', headers: UNENCODABLE });
    await f.waitForDepth(deadLetterQueueName(name), 1, 10_000);
    await waitFor('the dead letter counted', () => host.stats(name).deadLettered === 1);
    assert.equal(host.stats(name).requeued, 0);
    assert.equal(seen.length, 2);
    const [dead] = await f.drain(deadLetterQueueName(name));
    const expected = {
      meta: { value: 1, '!': 'java' },
      list: [{ k: 'v', '!': { '!': 'x' } }],
      t: { '!': 'timestamp', value: 2 ** 64 },
      when: { '!': 'timestamp', value: 1700000000 },
      price: { '!': 'decimal', value: { places: 2, digits: 12345 } },
      fraction: 2 ** 50 + 0.5,
      negative: -1e20,
    };
    for (const headers of [seen[0]!, seen[1]!, dead!.properties.headers ?? {}]) {
      for (const [key, value] of Object.entries(expected)) assert.deepEqual(headers[key], value);
      assert.equal(headers[DROPPED_HEADERS_HEADER], undefined);
    }
  });

  it('dead-letters invalid JSON with them at once, and replays it', async () => {
    const name = f.name('json');
    const def = f.definition('json', f.recordEffect, { routingKeys: ['json'] });
    const host = await f.host([def]);
    await f.publish('json', Buffer.from('{oops'), {
      messageId: 'json-1',
      headers: UNENCODABLE,
    });
    const dlq = deadLetterQueueName(name);
    await f.waitForDepth(dlq, 1, 10_000);
    await waitFor('the dead letter counted', () => host.stats(name).deadLettered === 1);
    assert.equal(host.stats(name).requeued, 0);

    // A replay is a copy too.
    const queue = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: name });
    try {
      await queue.replayOne('json-1');
    } finally {
      await queue.close();
    }
    await waitFor('dead-lettered again', () => host.stats(name).deadLettered === 2);
    const [dead] = await f.drain(dlq);
    assert.equal(dead!.properties.headers?.[OUTBOXKIT_HEADERS.reason], 'invalid-json');
    assert.deepEqual(dead!.properties.headers?.meta, { value: 1, '!': 'java' });
  });

  // RabbitMQ takes headers up to its frame_max (128 KiB); amqplib encodes 64 KiB at most.
  it('leaves out headers over amqplib 64 KiB, and names them', async () => {
    const name = f.name('wide');
    const seen: Array<{ attempt: number; headers: Readonly<Record<string, unknown>> }> = [];
    const def = f.definition(
      'wide',
      async (payload, ctx) => {
        seen.push({ attempt: ctx.attempt, headers: ctx.headers });
        if (ctx.attempt === 1) throw new Error('fails once');
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['wide'] },
    );
    const host = await f.host([def]);
    const headers = { 'x-jwt': 'j'.repeat(90 * 1024), tenant: 't1' };
    const exchange = f.name('events');
    await foreign.publish(exchange, 'wide', Buffer.from('{"n":1}'), {
      contentType: 'application/json',
      messageId: 'wide-1',
      headers,
      timestamp: 2n ** 64n - 1n,
    });
    await foreign.publish(exchange, 'wide', Buffer.from('{oops'), {
      contentType: 'application/json',
      messageId: 'wide-2',
      headers,
    });
    await waitFor('the first handled', () => host.stats(name).handled === 1, 10_000);
    await f.waitForDepth(deadLetterQueueName(name), 1, 10_000);
    assert.equal(host.stats(name).requeued, 0);

    assert.deepEqual(
      seen.map((s) => s.attempt),
      [1, 2],
    );
    assert.equal(seen[0]!.headers['x-jwt'], headers['x-jwt']);
    assert.equal(seen[1]!.headers['x-jwt'], undefined);
    assert.deepEqual(seen[1]!.headers[DROPPED_HEADERS_HEADER], ['x-jwt']);
    assert.equal(seen[1]!.headers.tenant, 't1');

    const [dead] = await f.drain(deadLetterQueueName(name));
    assert.equal(dead!.properties.messageId, 'wide-2');
    assert.equal(dead!.properties.headers?.[OUTBOXKIT_HEADERS.reason], 'invalid-json');
    assert.deepEqual(dead!.properties.headers?.[DROPPED_HEADERS_HEADER], ['x-jwt']);
    assert.equal(dead!.properties.headers?.tenant, 't1');
  });
});
