import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseDelivery } from '../src/consumer/parse-delivery.js';
import type { ResolvedConsumer } from '../src/consumer/resolve-consumer.js';
import { OUTBOXKIT_HEADERS, REPLAYED_AT_HEADER } from '../src/protocol/dead-letter-headers.js';
import {
  CAUSATION_ID_HEADER,
  ORDERING_KEY_HEADER,
  PUBLISH_TAG_HEADER,
} from '../src/protocol/message-headers.js';
import { MAX_HEADERS_BYTES } from '../src/writer/encode-headers.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { testRelay } from './support/relay-fixture.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/**
 * What a producer writes is what a consumer gets: bytes as bytes, text as text, JSON as JSON,
 * and headers up to the writer's limit are published, not parked.
 */
describe('writer to consumer round trip', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('wrt');
    broker = await TestBroker.open();
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it("leaves room under amqplib's 64 KiB for what outboxkit adds to the largest headers", () => {
    // amqplib encodes the headers in a 64 KiB scratch buffer (lib/defs.js, SCRATCH).
    const require = createRequire(import.meta.url);
    const codec = join(dirname(require.resolve('amqplib')), 'lib', 'codec.js');
    const { encodeTable } = require(codec) as {
      encodeTable(buffer: Buffer, value: object, offset: number): number;
    };
    const headers: Record<string, unknown> = {
      big: 'h'.repeat(MAX_HEADERS_BYTES - 4 - (1 + 3 + 1 + 4)),
      [ORDERING_KEY_HEADER]: 'o'.repeat(255),
      [CAUSATION_ID_HEADER]: 'c'.repeat(255),
      [PUBLISH_TAG_HEADER]: Number.MAX_SAFE_INTEGER,
      traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
      tracestate: 't'.repeat(512),
      [REPLAYED_AT_HEADER]: new Date().toISOString(),
    };
    // A dead letter's headers, at their longest.
    for (const name of Object.values(OUTBOXKIT_HEADERS)) headers[name] = 'e'.repeat(255);
    headers[OUTBOXKIT_HEADERS.error] = 'e'.repeat(2000);
    assert.ok(encodeTable(Buffer.alloc(64 * 1024), headers, 0) <= 64 * 1024);
  });

  it('delivers bytes, text and JSON as written, and the largest headers accepted', async () => {
    const exchange = await broker.exchange('rt');
    const queue = await broker.queue('rt', exchange);
    const writer = new OutboxWriter({ schema: t.schema });
    // At the limit, with the longest ordering key and causation id the relay adds beside them.
    const filler = 'h'.repeat(MAX_HEADERS_BYTES - 4 - (1 + 3 + 1 + 4));
    await t.db.transaction().execute((trx) =>
      writer.addMany(trx, [
        {
          exchange,
          routingKey: 'k',
          payload: new Uint8Array([0, 1, 255]),
          contentType: 'application/octet-stream',
          messageId: 'bytes',
        },
        {
          exchange,
          routingKey: 'k',
          payload: 'héllo',
          contentType: 'text/plain; charset=utf-8',
          messageId: 'text',
        },
        { exchange, routingKey: 'k', payload: 'hello', messageId: 'json' },
        {
          exchange,
          routingKey: 'k',
          payload: 1,
          messageId: 'headers',
          headers: { big: filler },
          orderingKey: 'o'.repeat(255),
          causationId: 'c'.repeat(255),
        },
      ]),
    );
    const relay = testRelay(t);
    await relay.start();
    try {
      await broker.waitForDepth(queue, 4);
    } finally {
      await relay.stop();
    }
    const byId = new Map((await broker.drain(queue)).map((m) => [m.properties.messageId, m]));
    assert.deepEqual([...byId.get('bytes')!.content], [0, 1, 255]);
    assert.equal(byId.get('text')!.content.toString('utf8'), 'héllo');
    assert.equal(byId.get('json')!.content.toString('utf8'), '"hello"');
    assert.equal(byId.get('headers')!.properties.headers!.big, filler);

    // The consumer hands non-JSON payloads over as their bytes and parses JSON ones.
    const consumer = {
      contentTypes: ['application/octet-stream', 'text/plain', 'application/json'],
      requiredHeaders: [],
      definition: {},
    } as unknown as ResolvedConsumer;
    const parsed = async (id: string) => {
      const result = await parseDelivery(consumer, byId.get(id)! as never);
      assert.ok(result.ok, id);
      return result.delivery.payload;
    };
    assert.deepEqual([...((await parsed('bytes')) as Buffer)], [0, 1, 255]);
    assert.equal(((await parsed('text')) as Buffer).toString('utf8'), 'héllo');
    assert.equal(await parsed('json'), 'hello');
  });
});
