import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { reencodableHeaders } from '../src/amqp/reencodable-headers.js';

// amqplib's own codec, which decodes a delivery's headers and encodes a copy's: its package
// exports only the public API, hence the path.
const require = createRequire(import.meta.url);
const codec = require(join(dirname(require.resolve('amqplib')), 'lib', 'codec.js')) as {
  encodeTable(buffer: Buffer, table: object, offset: number): number;
  decodeFields(slice: Buffer): Record<string, unknown>;
};

function encode(table: object): Buffer {
  const buffer = Buffer.alloc(64 * 1024);
  return buffer.subarray(0, codec.encodeTable(buffer, table, 0));
}

/** What a consumer gets for `table` as a publisher sent it (the table's 4-byte size left off). */
const decode = (wire: Buffer) => codec.decodeFields(wire.subarray(4));

/** The AMQP type tag of the one entry `x` of an encoded table. */
const tagOf = (wire: Buffer) => String.fromCharCode(wire[4 + 1 + 1]!);

/** Java's and .NET's clients send a table with a key `!` as it is: amqplib does for an inherited one. */
const bangTable = (bang: unknown, rest: object) =>
  Object.assign(Object.create({ '!': bang }), rest);

/**
 * Every AMQP field type: as sent, what `ctx.headers` holds (amqplib's decoding), and the type
 * a retry or dead-letter copy sends it as. docs/consumer.md (Headers of other publishers) says
 * the same.
 */
const TYPES: ReadonlyArray<readonly [string, unknown, unknown, string]> = [
  ['longstr', 'text', 'text', 'S'],
  ['boolean', true, true, 't'],
  ['void', null, null, 'V'],
  ['int8', { '!': 'int8', value: -5 }, -5, 'b'],
  ['uint8', { '!': 'uint8', value: 200 }, 200, 's'],
  ['int16', { '!': 'int16', value: -300 }, -300, 's'],
  ['uint16', { '!': 'uint16', value: 60000 }, 60000, 'I'],
  ['int32', { '!': 'int32', value: -70000 }, -70000, 'I'],
  ['uint32', { '!': 'uint32', value: 4294967295 }, 4294967295, 'l'],
  ['int64', { '!': 'int64', value: 42 }, 42, 'b'],
  ['int64 past 2^53, rounded', { '!': 'int64', value: '9007199254740993' }, 2 ** 53, 'l'],
  ['int64 max, rounded to 2^63', { '!': 'int64', value: '9223372036854775807' }, 2 ** 63, 'd'],
  ['int64 min', { '!': 'int64', value: '-9223372036854775808' }, -(2 ** 63), 'l'],
  ['float', { '!': 'float', value: 1.5 }, 1.5, 'd'],
  ['double', 2.5, 2.5, 'd'],
  ['double, whole', { '!': 'double', value: 2 }, 2, 'b'],
  ['double with a fraction past 2^50', { '!': 'double', value: 2 ** 50 + 0.5 }, 2 ** 50 + 0.5, 'd'],
  ['double below -2^63', { '!': 'double', value: -1e20 }, -1e20, 'd'],
  ['double NaN', { '!': 'double', value: Number.NaN }, Number.NaN, 'd'],
  ['double -Infinity', { '!': 'double', value: -Infinity }, -Infinity, 'd'],
  [
    'decimal',
    { '!': 'decimal', value: { places: 2, digits: 12345 } },
    { '!': 'decimal', value: { places: 2, digits: 12345 } },
    'D',
  ],
  [
    'timestamp',
    { '!': 'timestamp', value: 1700000000 },
    { '!': 'timestamp', value: 1700000000 },
    'T',
  ],
  [
    'timestamp 2^64 - 1, rounded to 2^64',
    { '!': 'timestamp', value: '18446744073709551615' },
    { '!': 'timestamp', value: 2 ** 64 },
    'T',
  ],
  ['byte array', Buffer.from([0, 1, 255]), Buffer.from([0, 1, 255]), 'x'],
  ['array', [1, 'a', null, [2]], [1, 'a', null, [2]], 'A'],
  ['table', { a: { b: 1 } }, { a: { b: 1 } }, 'F'],
  ['table with a key !', bangTable('java', { value: 1 }), { value: 1, '!': 'java' }, 'F'],
];

describe('headers of other publishers: what a consumer gets, and what its copies send', () => {
  for (const [type, sent, decoded, copyTag] of TYPES) {
    it(`${type}: decoded as amqplib does, copied as ${copyTag}`, () => {
      const got = decode(encode({ x: sent }));
      assert.deepEqual(got, { x: decoded });
      const copy = encode(reencodableHeaders(got));
      assert.equal(tagOf(copy), copyTag);
      // The copy's consumer gets the same value; 2^64 - 1 stays the largest timestamp.
      assert.deepEqual(decode(copy), { x: decoded });
    });
  }

  it('a table with a key ! keeps it, nested in tables and arrays, and the same bytes', () => {
    const sent = {
      meta: bangTable('java', { value: 1, inner: bangTable(bangTable('x', {}), { k: 'v' }) }),
      list: [bangTable('timestamp', { value: 'not a time' }), { '!': 'timestamp', value: 5 }],
    };
    const wire = encode(sent);
    const got = decode(wire);
    // amqplib's encoder fails on what its decoder gave.
    assert.throws(() => encode(got), /Unknown type to encode: java/);
    const copy = encode(reencodableHeaders(got));
    assert.deepEqual(decode(copy), got);
    assert.equal(copy.length, wire.length);
  });

  it('headers that need nothing are given back as they are', () => {
    const headers = { a: 'x', n: 1, t: { '!': 'timestamp', value: 1 }, l: [1, { b: true }] };
    assert.equal(reencodableHeaders(headers), headers);
  });
});
