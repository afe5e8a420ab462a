import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import {
  InvalidMessageError,
  type InvalidMessageReason,
} from '../src/errors/invalid-message-error.js';
import type { TransactionLike } from '../src/sql/sql-executor.js';
import type { OutboxMessage } from '../src/writer/outbox-message.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';

/** A transaction that records the statements' parameters instead of running them. */
function recordingTransaction(): { trx: TransactionLike; params: unknown[][] } {
  const params: unknown[][] = [];
  const trx = {
    query: async (_sql: string, values: unknown[]) => {
      params.push(values);
      return { rows: [], rowCount: 0 };
    },
  } as unknown as TransactionLike;
  return { trx, params };
}

const base = { exchange: 'orders', routingKey: 'order.placed' };

/** Writes `message` alone and returns the row's payload bytes, content type and headers. */
async function written(message: unknown) {
  const { trx, params } = recordingTransaction();
  await new OutboxWriter({ notifyIntervalMs: false }).add(trx, message as OutboxMessage);
  const [row] = params;
  return {
    payload: row![3] as Buffer,
    contentType: row![4] as string,
    headers: row![5] as string | null,
  };
}

async function refused(message: unknown, reason: InvalidMessageReason, pattern: RegExp) {
  await assert.rejects(
    written(message),
    (error: unknown) =>
      error instanceof InvalidMessageError &&
      error.reason === reason &&
      pattern.test(error.message),
  );
}

describe('writer: payloads are sent as given or refused, never silently changed', () => {
  it('sends a Uint8Array, DataView or ArrayBuffer as its bytes, like a Buffer', async () => {
    const bytes = [1, 2, 3];
    for (const payload of [
      Buffer.from(bytes),
      new Uint8Array(bytes),
      new Uint8Array([9, 1, 2, 3]).subarray(1),
      new DataView(new Uint8Array(bytes).buffer),
      new Uint8Array(bytes).buffer,
    ]) {
      const row = await written({ ...base, payload, contentType: 'application/octet-stream' });
      assert.deepEqual([...row.payload], bytes, Object.prototype.toString.call(payload));
      assert.equal(row.contentType, 'application/octet-stream');
    }
    await refused({ ...base, payload: new Uint8Array(bytes) }, 'missing-content-type', /binary/);
  });

  it('sends a string as its UTF-8 text under a non-JSON content type, as JSON under JSON', async () => {
    const text = await written({ ...base, payload: 'héllo', contentType: 'text/plain' });
    assert.equal(text.payload.toString('utf8'), 'héllo');
    const withCharset = await written({
      ...base,
      payload: 'a',
      contentType: 'Text/CSV; charset=utf-8',
    });
    assert.equal(withCharset.payload.toString('utf8'), 'a');
    const json = await written({ ...base, payload: 'hello' });
    assert.equal(json.payload.toString('utf8'), '"hello"');
    const cloudEvent = await written({
      ...base,
      payload: 'x',
      contentType: 'application/cloudevents+json',
    });
    assert.equal(cloudEvent.payload.toString('utf8'), '"x"');
    await refused(
      { ...base, payload: 'lone \ud800', contentType: 'text/plain' },
      'payload-not-serializable',
      /surrogate/,
    );
  });

  it('refuses values JSON would silently empty, at any depth, naming the payload', async () => {
    for (const [payload, pattern] of [
      [new Map([['a', 1]]), /payload is a Map.*Object\.fromEntries/],
      [new Set([1]), /payload is a Set/],
      [new Float32Array(2), /payload is a Float32Array.*object of indexes/],
      [new WeakMap(), /payload is a WeakMap/],
      [{ order: { tags: new Set(['a']) } }, /payload holds at key "tags" a Set/],
      [{ raw: new Uint8Array(2) }, /payload holds at key "raw" a Uint8Array/],
      [{ error: new Error('x') }, /payload holds at key "error" an Error/],
      // Its toJSON() gives { type, data }, which passed as plain data.
      [
        { file: { bytes: Buffer.from('ab') } },
        /payload holds at key "bytes" a Buffer.*"type": "Buffer"/,
      ],
      // Both became null without a word (found by a probe).
      [{ d: new Date(Number.NaN) }, /payload holds at key "d" an invalid Date/],
      [{ list: [1, undefined] }, /payload holds at key "1" undefined in an array/],
    ] as const) {
      await refused({ ...base, payload }, 'payload-not-serializable', pattern);
    }
    // What JSON keeps: class instances by their fields, a Date by its toJSON.
    const kept = await written({
      ...base,
      payload: {
        order: new (class Order {
          id = 1;
        })(),
        at: new Date(0),
      },
    });
    assert.deepEqual(JSON.parse(kept.payload.toString()), {
      order: { id: 1 },
      at: '1970-01-01T00:00:00.000Z',
    });
  });

  it('refuses a content type that is not type/subtype, which every consumer would dead-letter', async () => {
    for (const contentType of [
      'not a content type',
      'json',
      'application/',
      '/json',
      'text/plain x',
    ]) {
      await refused(
        { ...base, payload: 'x', contentType },
        'invalid-content-type',
        /type\/subtype/,
      );
    }
    for (const contentType of [
      'application/vnd.acme+json',
      'text/plain; charset=utf-8',
      'Text/CSV',
    ]) {
      assert.equal(
        (await written({ ...base, payload: 'x', contentType })).contentType,
        contentType,
      );
    }
  });

  it('refuses a payload object with a symbol key, which JSON would leave out', async () => {
    const key = Symbol('tenant');
    await refused(
      { ...base, payload: { a: 1, [key]: 'acme' } },
      'payload-not-serializable',
      /payload is an object with a symbol key \(Symbol\(tenant\)\)/,
    );
    await refused(
      { ...base, payload: { order: { [key]: 'acme' } } },
      'payload-not-serializable',
      /holds at key "order" an object with a symbol key/,
    );
    // A hidden (non-enumerable) symbol is a library's bookkeeping, not data: kept out quietly.
    const tagged = { a: 1 };
    Object.defineProperty(tagged, key, { value: 'meta', enumerable: false });
    assert.equal((await written({ ...base, payload: tagged })).payload.toString(), '{"a":1}');
  });

  it('refuses what is not a message object with its own reason', async () => {
    for (const message of [null, 'orders', []]) {
      await refused(message, 'not-a-message', /message must be an object/);
    }
  });

  it('refuses a blank content type', async () => {
    await refused({ ...base, payload: 1, contentType: ' ' }, 'missing-content-type', /not blank/);
    await refused(
      { ...base, payload: Buffer.from('x'), contentType: '' },
      'missing-content-type',
      /contentType/,
    );
  });
});

describe('writer: headers the relay could not publish are refused', () => {
  it('refuses headers that are not a plain object, such as a Map', async () => {
    await refused(
      { ...base, payload: 1, headers: new Map([['tenant', 'a']]) },
      'invalid-header',
      /`headers` must be a plain object.*a Map.*Object\.fromEntries/,
    );
    await refused(
      {
        ...base,
        payload: 1,
        headers: new (class H {
          a = 1;
        })(),
      },
      'invalid-header',
      /plain object/,
    );
    const nullProto = Object.assign(Object.create(null), { tenant: 'a' });
    assert.equal(
      (await written({ ...base, payload: 1, headers: nullProto })).headers,
      '{"tenant":"a"}',
    );
  });

  it('refuses numbers amqplib cannot encode, naming the header; keeps the ones it can', async () => {
    for (const value of [-1e300, -(2 ** 64), 2 ** 51 + 0.5]) {
      await refused(
        { ...base, payload: 1, headers: { n: value } },
        'invalid-header',
        /header "n" is .*64-bit integer/,
      );
    }
    await refused(
      { ...base, payload: 1, headers: { list: [1, -1e300] } },
      'invalid-header',
      /header "list"\[1\]/,
    );
    const headers = { a: 2 ** 60, b: 1e300, c: 1.5, d: -(2 ** 63), e: Number.MAX_SAFE_INTEGER };
    assert.deepEqual(
      JSON.parse((await written({ ...base, payload: 1, headers })).headers!),
      headers,
    );
  });

  it('refuses CC and BCC headers the broker would refuse, keeps arrays of routing keys', async () => {
    // A string BCC made RabbitMQ close the publish channel at every try: the row never went,
    // and its batch's other rows were sent again each time (a security probe).
    for (const headers of [{ BCC: 'private.admin' }, { CC: ['ok', 7] }, { CC: null }]) {
      await refused(
        { ...base, payload: 1, headers },
        'invalid-header',
        /header (CC|BCC) must be an array of routing keys/,
      );
    }
    assert.equal(
      (await written({ ...base, payload: 1, headers: { CC: ['audit'], cc: 'x' } })).headers,
      '{"CC":["audit"],"cc":"x"}',
    );
  });

  it('refuses headers over the encoded size limit', async () => {
    await refused(
      { ...base, payload: 1, headers: { big: 'x'.repeat(200 * 1024) } },
      'invalid-header',
      /headers take \d+ bytes encoded, over the limit of 57344/,
    );
    await written({ ...base, payload: 1, headers: { big: 'x'.repeat(56 * 1024 - 20) } });
  });

  it('refuses the headers the relay sets from the ordering key and causation id', async () => {
    for (const [name, field] of [
      ['x-ordering-key', 'orderingKey'],
      ['X-Ordering-Key', 'orderingKey'],
      ['x-causation-id', 'causationId'],
    ]) {
      await refused(
        { ...base, payload: 1, headers: { [name!]: 'a' } },
        'invalid-header',
        new RegExp(`"${name}" is reserved.*\`${field}\``),
      );
    }
  });
});

describe('writer: fields and arguments', () => {
  it('refuses the default exchange, "" or amq.default, saying why and what to do instead', async () => {
    await refused(
      { ...base, exchange: '', payload: 1 },
      'missing-exchange',
      /`exchange` "" is RabbitMQ's default exchange, which outboxkit does not publish to: the relay checks that an exchange exists before it publishes to it, and RabbitMQ refuses that check on the default exchange \(403\)\. Declare an exchange and bind the queue to it/,
    );
    // Not "can never exist": RabbitMQ's management UI shows the default exchange by this name.
    await refused(
      { ...base, exchange: 'amq.default', payload: 1 },
      'reserved-exchange',
      /`exchange` "amq\.default" is the management UI's name of RabbitMQ's default exchange \(""\), which outboxkit does not publish to: .*Declare an exchange and bind the queue to it/,
    );
  });

  it('refuses an amq.* exchange other than the predefined ones', async () => {
    await refused(
      { ...base, exchange: 'amq.x', payload: 1 },
      'reserved-exchange',
      /"amq\.x" is reserved/,
    );
    await refused(
      { ...base, exchange: 'amq.rabbitmq.trace', payload: 1 },
      'reserved-exchange',
      /reserved/,
    );
    for (const exchange of ['amq.direct', 'amq.fanout', 'amq.topic', 'amq.headers', 'amq.match']) {
      await written({ ...base, exchange, payload: 1 });
    }
  });

  it('refuses a blank message id and a delay over 366 days', async () => {
    await refused({ ...base, payload: 1, messageId: ' ' }, 'invalid-message-id', /blank/);
    await refused({ ...base, payload: 1, delayMs: Date.now() }, 'invalid-delay', /epoch timestamp/);
    await refused(
      { ...base, payload: 1, delayMs: Number.MAX_SAFE_INTEGER },
      'invalid-delay',
      /366 days/,
    );
    await written({ ...base, payload: 1, delayMs: 366 * 24 * 3600 * 1000 });
  });

  it('refuses null for an optional field rather than taking it for none', async () => {
    await refused(
      { ...base, payload: 1, orderingKey: null },
      'invalid-ordering-key',
      /left out \(undefined\): got null, which would send the message without its order/,
    );
    await refused({ ...base, payload: 1, messageId: null }, 'invalid-message-id', /got null/);
    await refused({ ...base, payload: 1, correlationId: null }, 'invalid-correlation-id', /null/);
    await refused({ ...base, payload: 1, causationId: null }, 'invalid-causation-id', /null/);
    await refused({ ...base, payload: 1, delayMs: null }, 'invalid-delay', /got null/);
    await refused({ ...base, payload: 1, headers: null }, 'invalid-header', /got null/);
    await refused({ ...base, payload: 1, contentType: null }, 'missing-content-type', /got null/);
    await refused(
      { ...base, payload: Buffer.from('x'), contentType: null },
      'missing-content-type',
      /got null/,
    );
    // null as a header's value, or as the payload, is a value: JSON has it.
    assert.equal(
      (await written({ ...base, payload: null, headers: { a: null } })).headers,
      '{"a":null}',
    );
  });

  it('refuses a field that is not one of a message, with a did-you-mean', async () => {
    await refused(
      { ...base, payload: 1, orderingkey: 'o-1' },
      'unknown-field',
      /`orderingkey` is not a field of an outbox message; did you mean `orderingKey`\?/,
    );
    await refused({ ...base, payload: 1, dealyMs: 5 }, 'unknown-field', /did you mean `delayMs`/);
    await written({ ...base, payload: 1, orderingKey: undefined });
  });

  it('refuses a repeated message id to one exchange and routing key within addMany, naming both indexes', async () => {
    const { trx } = recordingTransaction();
    const writer = new OutboxWriter({ notifyIntervalMs: false });
    await assert.rejects(
      writer.addMany(trx, [
        { ...base, payload: 1, messageId: 'm-1' },
        { ...base, payload: 2, messageId: 'm-2' },
        { ...base, payload: 3, messageId: 'm-1' },
      ]),
      (error: unknown) =>
        error instanceof InvalidMessageError &&
        error.reason === 'duplicate-message-id' &&
        error.index === 2 &&
        /#2: `messageId` "m-1" is also the id of message #0/.test(error.message),
    );
    // One event to two exchanges, or under two routing keys, keeps its id: each queue bound to
    // one of them sees it once (a queue bound to both dedupes it, by design).
    await writer.addMany(trx, [
      { ...base, payload: 1, messageId: 'm-1' },
      { ...base, exchange: 'audit', payload: 1, messageId: 'm-1' },
      { ...base, routingKey: 'other', payload: 1, messageId: 'm-1' },
    ]);
  });

  it('refuses messages that are not an array, and options that are not an object', async () => {
    const { trx } = recordingTransaction();
    const writer = new OutboxWriter();
    for (const messages of ['abc', {}, null, new Set(), undefined]) {
      await assert.rejects(
        writer.addMany(trx, messages as never),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'messages' &&
          /addMany takes an array of messages/.test(error.message),
      );
    }
    for (const options of ['probeC_s', 5, null, []]) {
      assert.throws(
        () => new OutboxWriter(options as never),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'options' &&
          /takes an options object/.test(error.message),
      );
    }
  });
});
