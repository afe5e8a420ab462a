import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ADVISORY_LOCK_CLASS } from '../src/sql/advisory-locks.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

// docs/protocol.md shows a producer that is not Node writing an outbox row in SQL: it is run here
// as written, on this test's schema and exchange, and the relay publishes what it says.
const PROTOCOL = fileURLToPath(new URL('../../docs/protocol.md', import.meta.url));

function sqlSnippet(): string {
  const doc = readFileSync(PROTOCOL, 'utf8');
  const section = doc.slice(doc.indexOf('## Writing a row from SQL'));
  const block = /```sql\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'docs/protocol.md has the SQL of "Writing a row from SQL"');
  return block[1]!;
}

describe('a row written from SQL as docs/protocol.md shows', () => {
  const bed = relayTestBed('sqlproducer');

  it('is published with its properties, headers and ordering key', async () => {
    const exchange = await bed.broker.exchange('orders');
    const queue = await bed.broker.queue('orders', exchange);
    const sql = sqlSnippet()
      .replaceAll('"outboxkit".outbox', `"${bed.t.schema}".outbox`)
      .replaceAll("'outboxkit:outboxkit'", `'outboxkit:${bed.t.schema}'`)
      .replaceAll("'orders'", `'${exchange}'`);
    assert.notEqual(sql, sqlSnippet(), 'the snippet names the schema, channel and exchange');
    // The writer's lock class, so that the snippet's keyed rows wait for the writer's and back.
    assert.match(sql, new RegExp(`pg_advisory_xact_lock\\(${ADVISORY_LOCK_CLASS}, hashtext`));
    const client = await bed.t.pool.connect();
    try {
      await client.query(sql);
    } finally {
      client.release();
    }
    await bed.start();
    await waitFor('the message in the queue', async () => (await bed.broker.depth(queue)) === 1);
    const [message] = await bed.broker.drain(queue);
    assert.ok(message);
    assert.deepEqual(payloadOf(message), { orderId: 'o-1' });
    assert.equal(message.properties.messageId, '0193b7e2-5c1a-7c3e-9d4f-2a6b8c0d1e2f');
    assert.equal(message.properties.contentType, 'application/json');
    assert.equal(message.fields.routingKey, 'order.placed');
    assert.equal(message.properties.headers?.tenant, 't1');
    assert.equal(message.properties.headers?.['x-ordering-key'], 'customer-42');
  });
});
