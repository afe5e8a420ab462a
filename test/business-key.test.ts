import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Message } from 'amqplib';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { InvalidMessageError } from '../src/errors/invalid-message-error.js';
import { MAX_BUSINESS_KEY_BYTES } from '../src/protocol/business-key.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

/** message id -> the key its payload carries, and how the consumer must end it. */
interface Case {
  readonly id: string;
  readonly key: string;
  /** The dead-letter error it must get, or undefined when it must be handled (or deduped). */
  readonly error?: RegExp;
}

const LONE_SURROGATE = /is not well-formed Unicode \(a lone surrogate\)/;

const cases: readonly Case[] = [
  // Postgres stores each of these three as 'x\uFFFD': one effect, two silent duplicates.
  { id: 'sur-d800', key: 'x\uD800', error: LONE_SURROGATE },
  { id: 'sur-d801', key: 'x\uD801', error: LONE_SURROGATE },
  { id: 'sur-dfff', key: 'x\uDFFF', error: LONE_SURROGATE },
  { id: 'nul', key: 'a\u0000b', error: /contains NUL/ },
  // Random, so it does not compress below the btree's limit: Postgres refuses the index row.
  {
    id: 'big',
    key: randomBytes(6000).toString('base64'),
    error: /is 8000 bytes, longer than the limit 1024/,
  },
  // 513 characters, 1026 bytes: the limit counts UTF-8 bytes.
  { id: 'over', key: 'é'.repeat(513), error: /is 1026 bytes, longer than the limit 1024/ },
  { id: 'fffd', key: 'x\uFFFD' },
  { id: 'limit-ascii', key: 'x'.repeat(MAX_BUSINESS_KEY_BYTES) },
  { id: 'limit-2byte', key: 'é'.repeat(MAX_BUSINESS_KEY_BYTES / 2) },
  // Surrogate pairs are well-formed: 256 emoji, 512 UTF-16 units, 1024 bytes.
  { id: 'limit-pairs', key: '\u{1F600}'.repeat(MAX_BUSINESS_KEY_BYTES / 4) },
];
/** The same key as 'limit-ascii' under another message id: a duplicate, at the limit. */
const again: Case = { id: 'limit-again', key: 'x'.repeat(MAX_BUSINESS_KEY_BYTES) };

function byId(dead: Message[]): Map<string, Message> {
  return new Map(dead.map((m) => [String(m.properties.messageId), m]));
}

describe('business keys Postgres cannot store as given', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('bkey');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  for (const batchSize of [1, 5]) {
    it(`batchSize ${batchSize}: a key with NUL, a lone surrogate or over ${MAX_BUSINESS_KEY_BYTES} bytes is dead-lettered at once as invalid-business-key; a key at the limit is handled and deduped`, async () => {
      const suffix = `keys${batchSize}`;
      const name = f.name(suffix);
      const calls: string[] = [];
      const def = f.definition<{ k: string }>(
        suffix,
        async (payload, ctx) => {
          calls.push(String(ctx.messageId));
          await f.recordEffect(payload, ctx as ConsumeContext);
        },
        {
          routingKeys: [suffix],
          concurrency: 1,
          batchSize,
          businessKey: (payload) => payload.k,
        },
      );
      // Declare the queue, then publish everything while no host consumes it, so the batched
      // consumer gets the messages together.
      await f.host([def]);
      await f.stopHosts();
      const all = [...cases, again];
      await f.publishMany(
        all.map((c) => ({
          routingKey: suffix,
          content: { k: c.key },
          options: { messageId: c.id },
        })),
      );
      const host = await f.host([def]);
      await waitFor(
        'every message settled',
        () => {
          const s = host.stats(name);
          return s.handled + s.duplicates + s.deadLettered === all.length;
        },
        30_000,
      );

      const invalid = cases.filter((c) => c.error !== undefined);
      const valid = cases.filter((c) => c.error === undefined);
      const dead = byId(await f.drain(deadLetterQueueName(name)));
      assert.deepEqual([...dead.keys()].sort(), invalid.map((c) => c.id).sort());
      for (const c of invalid) {
        const headers = dead.get(c.id)!.properties.headers ?? {};
        assert.equal(headers[OUTBOXKIT_HEADERS.reason], 'invalid-business-key', c.id);
        assert.match(String(headers[OUTBOXKIT_HEADERS.error]), c.error!, c.id);
        assert.match(String(headers[OUTBOXKIT_HEADERS.error]), /^the business key "/, c.id);
        // No handler attempt was made.
        assert.equal(headers[OUTBOXKIT_HEADERS.attempts], 0, c.id);
      }
      // The key is quoted escaped, and cut short.
      assert.match(
        String(dead.get('sur-d800')!.properties.headers?.[OUTBOXKIT_HEADERS.error]),
        /"x\\ud800"/,
      );
      assert.match(
        String(dead.get('big')!.properties.headers?.[OUTBOXKIT_HEADERS.error]),
        /^the business key "[^"]{40}"\.\.\. is/,
      );

      assert.deepEqual(calls.sort(), valid.map((c) => c.id).sort(), 'handler calls');
      const effects = (await f.effects()).filter((e) => e.consumer === name);
      assert.deepEqual(
        effects.map((e) => e.key).sort(),
        valid.map((c) => c.key).sort(),
        'one effect per valid key, stored as given',
      );
      const stats = host.stats(name);
      assert.equal(stats.received, all.length, 'each message delivered once: no retries');
      assert.equal(stats.failures, 0);
      assert.equal(stats.retried, 0);
      assert.equal(stats.deadLettered, invalid.length);
      assert.equal(stats.handled, valid.length);
      assert.equal(stats.duplicates, 1, 'only limit-again is a duplicate');
      if (batchSize > 1) assert.ok(stats.batches > 0, 'some transactions held several deliveries');
      assert.equal(await f.depth(name), 0);
    });
  }

  it('a message id with NUL is refused as the default key, and recorded with U+FFFD beside a businessKey', async () => {
    const byIdName = f.name('byid');
    const byKeyName = f.name('bykey');
    const byIdDef = f.definition('byid', f.recordEffect, { routingKeys: ['byid'], concurrency: 1 });
    const byKey = f.definition<{ k: string }>('bykey', f.recordEffect, {
      routingKeys: ['bykey'],
      concurrency: 1,
      businessKey: (payload) => payload.k,
    });
    const host = await f.host([byIdDef, byKey]);
    await f.publish('byid', { k: 'unused' }, { messageId: 'm\u0000id' });
    await f.publish('byid', { k: 'unused' }, { messageId: 'm-ok' });
    await f.publish('bykey', { k: 'key-1' }, { messageId: 'n\u0000id' });
    await waitFor('all three settled', () => {
      const a = host.stats(byIdName);
      const b = host.stats(byKeyName);
      return a.handled + a.deadLettered === 2 && b.handled + b.deadLettered === 1;
    });
    const [dead] = await f.drain(deadLetterQueueName(byIdName));
    assert.equal(dead?.properties.headers?.[OUTBOXKIT_HEADERS.reason], 'invalid-business-key');
    assert.match(
      String(dead?.properties.headers?.[OUTBOXKIT_HEADERS.error]),
      /^the message id \(the business key\) "m\\u0000id" contains NUL/,
    );
    assert.equal(host.stats(byIdName).handled, 1);
    assert.equal(host.stats(byKeyName).handled, 1);
    assert.equal(host.stats(byKeyName).failures, 0);
    const { rows } = await f.t.pool.query(
      `SELECT business_key, message_id FROM "${f.t.schema}".processed_messages
       WHERE consumer = $1`,
      [byKeyName],
    );
    assert.deepEqual(rows, [{ business_key: 'key-1', message_id: 'n\uFFFDid' }]);
  });

  it('the writer refuses a message id, the default key, with a lone surrogate or NUL, and writes nothing', async () => {
    const writer = new OutboxWriter({ schema: f.t.schema });
    const base = { exchange: 'orders', routingKey: 'order.placed', payload: { id: 1 } };
    const before = await f.t.count('outbox');
    for (const messageId of ['x\uD800', 'x\uDFFFy', 'a\u0000b']) {
      await assert.rejects(
        f.t.db.transaction().execute((trx) => writer.addMany(trx, [base, { ...base, messageId }])),
        (error: unknown) => {
          assert.ok(error instanceof InvalidMessageError, String(error));
          assert.equal(error.reason, 'invalid-message-id');
          assert.equal(error.index, 1);
          assert.match(error.message, /`messageId` must be .*, without NUL or lone surrogates/);
          return true;
        },
      );
    }
    assert.equal(await f.t.count('outbox'), before);
    // U+FFFD itself, and surrogate pairs, are well-formed.
    await f.t.db.transaction().execute(async (trx) => {
      await writer.add(trx, { ...base, messageId: 'x\uFFFD' });
      await writer.add(trx, { ...base, messageId: 'x\u{1F600}' });
    });
    assert.equal(await f.t.count('outbox'), before + 2);
  });
});
