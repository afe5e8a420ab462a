import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { byteaBuffer } from '../src/sql/bytea-buffer.js';
import { DATABASE_URL } from './support/env.js';

describe('byteaBuffer: a bytea column whatever the type parser made of it', () => {
  const bytes = Buffer.from([0x7b, 0x5c, 0x00, 0xff, 0x22, 0x41, 0x7d]);

  it('takes bytes as they are', () => {
    assert.equal(byteaBuffer(bytes), bytes);
    assert.deepEqual(byteaBuffer(new Uint8Array(bytes)), bytes);
  });

  // The server's own text in both output formats, as a parser that returns it leaves it.
  for (const output of ['hex', 'escape']) {
    it(`reads the server's text with bytea_output = ${output}`, async () => {
      const client = new pg.Client({
        connectionString: DATABASE_URL,
        options: `-c bytea_output=${output}`,
        types: { getTypeParser: () => (value: string) => value },
      });
      await client.connect();
      try {
        const { rows } = await client.query<{ b: string }>('SELECT $1::bytea AS b', [bytes]);
        assert.equal(typeof rows[0]!.b, 'string');
        assert.deepEqual(byteaBuffer(rows[0]!.b), bytes);
      } finally {
        await client.end();
      }
    });
  }

  it('refuses what is neither bytes nor text, naming what it got', () => {
    assert.throws(() => byteaBuffer(42), {
      code: 'unreadable-payload',
      message: /came back from the pool as number/,
    });
  });
});
