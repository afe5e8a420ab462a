import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { recordingLogger } from './support/recording-logger.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/** One row as a producer in another language would write it, with plain SQL. */
interface SqlRow {
  readonly messageId: string;
  readonly exchange: string;
  /** SQL for the headers column: a jsonb literal, or NULL. */
  readonly headers?: string;
  readonly createdAt?: string;
  readonly availableAt?: string;
  /** SQL for the payload; by default the message id as a JSON string. */
  readonly payload?: string;
}

// Rows the writer refuses, which a producer that writes the outbox by SQL can still write: each
// must be parked with a reason naming what is wrong, or wait, without holding up the rows
// claimed with it (found by an interop probe: such rows stalled their batch, or every claim).
describe('OutboxRelay, rows written by SQL that the writer would refuse', () => {
  const bed = relayTestBed('relay_sql_rows');
  const { start } = bed;

  async function insert(rows: readonly SqlRow[]): Promise<void> {
    for (const row of rows) {
      await bed.t.pool.query(
        `INSERT INTO "${bed.t.schema}".outbox (message_id, exchange, routing_key, payload,
           content_type, headers, created_at, available_at)
         VALUES ($1, $2, 'k', ${row.payload ?? `convert_to(to_json($1::text)::text, 'UTF8')`},
           'application/json',
           ${row.headers ?? 'NULL'},
           coalesce($3::timestamptz, now()), coalesce($4::timestamptz, now()))`,
        [row.messageId, row.exchange, row.createdAt ?? null, row.availableAt ?? null],
      );
    }
  }

  /** `count` rows to `exchange` that nothing is wrong with. */
  const innocent = (exchange: string, count: number): SqlRow[] =>
    Array.from({ length: count }, (_, i) => ({ messageId: `innocent-${i}`, exchange }));

  async function parked(): Promise<Map<string, string>> {
    const { rows } = await bed.t.pool.query<{ message_id: string; reason: string }>(
      `SELECT message_id, reason FROM "${bed.t.schema}".outbox_parked ORDER BY id`,
    );
    return new Map(rows.map((r) => [r.message_id, r.reason]));
  }

  it('parks a row whose exchange is "" or over 255 bytes, and publishes the rows claimed with it', async () => {
    const exchange = await bed.broker.exchange('names');
    const queue = await bed.broker.queue('names', exchange);
    // Claimed in one batch with the innocent rows: the exchange check failed it, for ever.
    await insert([
      { messageId: 'default-exchange', exchange: '' },
      { messageId: 'long-exchange', exchange: 'e'.repeat(300) },
      { messageId: 'reserved-exchange', exchange: 'amq.never' },
      ...innocent(exchange, 20),
    ]);
    const relay = await start();
    await waitFor('every row settled', () => relay.stats().published === 20, 15_000);
    await waitFor('the bad rows parked', () => relay.stats().parked === 3, 15_000);
    const reasons = await parked();
    assert.match(
      reasons.get('default-exchange')!,
      /^invalid exchange: `exchange` "" is RabbitMQ's default exchange, which outboxkit does not publish to: .*bind the queue to it/,
    );
    assert.match(reasons.get('long-exchange')!, /^invalid exchange: .*got 300 bytes$/);
    assert.match(reasons.get('reserved-exchange')!, /^invalid exchange: .*"amq.never" is reserved/);
    assert.equal(relay.stats().errors, 0, 'no batch failed');
    assert.equal(await bed.t.count(), 0);
    assert.equal((await bed.broker.drain(queue)).length, 20);
  });

  it('parks a row whose created_at is infinite or before 1970, naming created_at; the other rows go', async () => {
    const exchange = await bed.broker.exchange('created');
    const queue = await bed.broker.queue('created', exchange);
    await insert([
      { messageId: 'created-plus-inf', exchange, createdAt: 'infinity' },
      { messageId: 'created-minus-inf', exchange, createdAt: '-infinity' },
      { messageId: 'created-1900', exchange, createdAt: '1900-01-01T00:00:00Z' },
      ...innocent(exchange, 20),
    ]);
    const relay = await start();
    await waitFor('the innocent rows published', () => relay.stats().published === 20, 15_000);
    await waitFor('the bad rows parked', () => relay.stats().parked === 3, 15_000);
    const reasons = await parked();
    const infinite = 'not sent: `created_at` is infinite, which an AMQP timestamp cannot hold';
    assert.equal(reasons.get('created-plus-inf'), infinite);
    assert.equal(reasons.get('created-minus-inf'), infinite);
    assert.match(
      reasons.get('created-1900')!,
      /^not sent: `created_at` is before 1970 \(-2208988800 s from the epoch\)/,
    );
    assert.equal(relay.stats().errors, 0, 'no claim failed');
    assert.equal((await bed.broker.drain(queue)).length, 20);
    // Listing them failed too ("bigint out of range"): they are the earliest and latest Dates.
    const listed = await new ParkedMessages({ pool: bed.t.pool, schema: bed.t.schema }).list();
    const createdAt = new Map(listed.map((m) => [m.messageId, m.createdAt.getTime()]));
    assert.equal(createdAt.get('created-plus-inf'), 8.64e15);
    assert.equal(createdAt.get('created-minus-inf'), -8.64e15);
    assert.equal(createdAt.get('created-1900'), -2208988800000);
  });

  it("waits for a row available at 'infinity' for ever without failing the idle polls, and one at '-infinity' goes", async () => {
    const exchange = await bed.broker.exchange('available');
    const queue = await bed.broker.queue('available', exchange);
    // Alone in its claim, the '-infinity' row became the claims' cursor, which failed the next.
    await insert([{ messageId: 'available-minus-inf', exchange, availableAt: '-infinity' }]);
    await insert([{ messageId: 'never', exchange, availableAt: 'infinity' }]);
    const relay = await start({ pollIntervalMs: 50 });
    await waitFor('the -infinity row published', () => relay.stats().published === 1, 15_000);
    // The lanes poll the idle outbox meanwhile, each asking when the next row is due.
    await insert(innocent(exchange, 1));
    await waitFor('the row written after published', () => relay.stats().published === 2, 15_000);
    assert.equal(relay.stats().errors, 0, 'a claim or an idle poll failed');
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), [
      'available-minus-inf',
      'innocent-0',
    ]);
    const { rows } = await bed.t.pool.query(
      `SELECT message_id, attempts, last_error FROM "${bed.t.schema}".outbox`,
    );
    assert.deepEqual(rows, [{ message_id: 'never', attempts: 0, last_error: null }]);
  });

  it('parks headers that are no JSON object, or that amqplib cannot encode, naming the header or column', async () => {
    const exchange = await bed.broker.exchange('headers');
    const queue = await bed.broker.queue('headers', exchange);
    await insert([
      { messageId: 'string', exchange, headers: `'"hello"'` },
      { messageId: 'array', exchange, headers: `'["a","b"]'` },
      { messageId: 'number', exchange, headers: `'42'` },
      { messageId: 'boolean', exchange, headers: `'true'` },
      { messageId: 'long-name', exchange, headers: `jsonb_build_object(repeat('k', 300), 1)` },
      { messageId: 'big-negative', exchange, headers: `'{"n": -1e20}'` },
      { messageId: 'nested', exchange, headers: `'{"a": {"b": [1, -1e20]}}'` },
      // A JSON null is no headers, as SQL NULL is.
      { messageId: 'json-null', exchange, headers: `'null'` },
      { messageId: 'fine', exchange, headers: `'{"tenant": "t1", "n": 1e20}'` },
      // Not a header, but amqplib's words named no column either.
      { messageId: 'i'.repeat(300), exchange },
    ]);
    const relay = await start();
    await waitFor('every row settled', () => relay.stats().parked === 8, 15_000);
    await waitFor('the good rows published', () => relay.stats().published === 2, 15_000);
    const reasons = await parked();
    assert.equal(reasons.get('string'), 'headers must be a JSON object, got a JSON string');
    assert.equal(reasons.get('array'), 'headers must be a JSON object, got a JSON array');
    assert.equal(reasons.get('number'), 'headers must be a JSON object, got a JSON number');
    assert.equal(reasons.get('boolean'), 'headers must be a JSON object, got a JSON boolean');
    assert.equal(
      reasons.get('long-name'),
      `not sent: header name "${'k'.repeat(40)}..." is 300 bytes, over the 255 of an AMQP field name`,
    );
    assert.match(
      reasons.get('big-negative')!,
      /^not sent: header "n" is -100000000000000000000, which amqplib would send as a 64-bit integer and cannot/,
    );
    assert.match(reasons.get('nested')!, /^not sent: header "a"\."b"\[1\] is -1000/);
    assert.equal(
      reasons.get('i'.repeat(300)),
      'not sent: `message_id` is 300 bytes, over the 255 of an AMQP short string',
    );
    const messages = await bed.broker.drain(queue);
    assert.deepEqual(messages.map(payloadOf).sort(), ['fine', 'json-null']);
    const fine = messages.find((m) => payloadOf(m) === 'fine')!;
    assert.equal(fine.properties.headers?.tenant, 't1');
  });

  it('logs how many rows a batch parked for each reason', async () => {
    // No queue is bound: each row is returned, unroutable, but the one over maxMessageBytes.
    const exchange = await bed.broker.exchange('reasons');
    await insert([
      { messageId: 'u1', exchange },
      { messageId: 'large', exchange, payload: `convert_to(repeat('x', 2000), 'UTF8')` },
      { messageId: 'u2', exchange },
      { messageId: 'u3', exchange },
    ]);
    const logger = recordingLogger();
    const relay = await start({ logger, maxMessageBytes: 1000 });
    await waitFor('the rows parked', () => relay.stats().parked === 4, 15_000);
    const lines = logger.lines.filter((l) => l.text.startsWith('outbox rows parked '));
    // One claim took all four; its line named only the first reason.
    assert.deepEqual(
      lines.map((l) => JSON.parse(l.text.slice('outbox rows parked '.length))),
      [
        {
          count: 4,
          reasons: { 'unroutable: 312 NO_ROUTE': 3, 'too large: 2000 bytes, limit 1000': 1 },
          destination: `${exchange} k`,
        },
      ],
    );
  });
});
