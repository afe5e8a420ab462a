import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { StateError } from '../src/errors/state-error.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { DATABASE_URL } from './support/env.js';
import { numberedMessages, testRelay, writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

describe('OutboxRelay', () => {
  const bed = relayTestBed('relay');
  const { start } = bed;

  it('publishes committed messages, and a row disappears only once its message is in the queue', async () => {
    const exchange = await bed.broker.exchange('basic');
    const queue = await bed.broker.queue('basic', exchange);
    const total = 3000;
    const writtenFrom = Math.floor(Date.now() / 1000);
    await writeMessages(bed.t, numberedMessages(exchange, total, 'm'));
    const writtenTo = Math.ceil(Date.now() / 1000);
    await start({ batchSize: 100 });
    // Rows are read before the queue: a row missing from the outbox was deleted after its ack,
    // so its message must already be counted in the queue.
    let samples = 0;
    await waitFor('the outbox to drain', async () => {
      const rows = await bed.t.count();
      const depth = await bed.broker.depth(queue);
      samples += 1;
      assert.ok(rows + depth >= total, `lost: ${rows} rows + ${depth} queued < ${total}`);
      return rows === 0;
    });
    assert.ok(samples > 1);
    const messages = await bed.broker.drain(queue);
    assert.equal(messages.length, total);
    assert.equal(new Set(messages.map((m) => m.properties.messageId)).size, total);
    const first = messages.find((m) => m.properties.messageId === 'm0')!;
    assert.deepEqual(payloadOf(first), { i: 0 });
    assert.equal(first.properties.contentType, 'application/json');
    assert.equal(first.properties.deliveryMode, 2);
    // The AMQP timestamp is the row's creation, in seconds (Postgres and this test share a clock).
    const stamp = first.properties.timestamp as number;
    assert.ok(
      stamp >= writtenFrom && stamp <= writtenTo,
      `timestamp ${stamp} not in [${writtenFrom}, ${writtenTo}]`,
    );
  });

  it('publishes nothing for a rolled-back transaction', async () => {
    const exchange = await bed.broker.exchange('rollback');
    const queue = await bed.broker.queue('rollback', exchange);
    const writer = new OutboxWriter({ schema: bed.t.schema });
    await bed.t.db
      .transaction()
      .execute(async (trx) => {
        await writer.add(trx, { exchange, routingKey: 'k', payload: 'rolled back' });
        throw new Error('abort');
      })
      .catch(() => {});
    await bed.t.db
      .transaction()
      .execute((trx) => writer.add(trx, { exchange, routingKey: 'k', payload: 'committed' }));
    const relay = await start();
    await waitFor('the committed message', () => relay.stats().published === 1);
    const messages = await bed.broker.drain(queue);
    assert.deepEqual(messages.map(payloadOf), ['committed']);
  });

  it('carries headers, correlation id, causation id and ordering key', async () => {
    const exchange = await bed.broker.exchange('props');
    const queue = await bed.broker.queue('props', exchange);
    await writeMessages(bed.t, [
      {
        exchange,
        routingKey: 'k',
        payload: Buffer.from('raw'),
        contentType: 'text/plain',
        headers: { tenant: 't1', n: 2, list: ['a', 1] },
        correlationId: 'corr',
        causationId: 'cause',
        orderingKey: 'order-1',
      },
    ]);
    await start();
    await bed.broker.waitForDepth(queue, 1);
    const [m] = await bed.broker.drain(queue);
    assert.equal(m!.content.toString(), 'raw');
    assert.equal(m!.properties.contentType, 'text/plain');
    assert.equal(m!.properties.correlationId, 'corr');
    assert.equal(m!.properties.headers!['tenant'], 't1');
    assert.equal(m!.properties.headers!['n'], 2);
    assert.deepEqual(m!.properties.headers!['list'], ['a', 1]);
    assert.equal(m!.properties.headers!['x-causation-id'], 'cause');
    assert.equal(m!.properties.headers!['x-ordering-key'], 'order-1');
  });

  it('publishes a committed message long before the poll interval', async () => {
    const exchange = await bed.broker.exchange('latency');
    const queue = await bed.broker.queue('latency', exchange);
    const relay = await start({ pollIntervalMs: 30_000 });
    // The relay wakes on LISTEN once connected; wait for the idle lanes to be parked on it.
    await waitFor('the relay to listen', () => relay.listenConnects === 1 && relay.isConnected);
    const started = Date.now();
    await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'now' }]);
    await bed.broker.waitForDepth(queue, 1, 5000);
    const latency = Date.now() - started;
    assert.ok(latency < 5000, `took ${latency} ms with a 30 s poll interval`);
  });

  it('finds a message written without a NOTIFY soon after one it published', async () => {
    const exchange = await bed.broker.exchange('recheck');
    const queue = await bed.broker.queue('recheck', exchange);
    const relay = await start({ pollIntervalMs: 30_000 });
    await waitFor('the relay to listen', () => relay.listenConnects === 1 && relay.isConnected);
    await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'first' }]);
    await bed.broker.waitForDepth(queue, 1, 5000);
    // A writer that never notifies stands for one inside its notify interval.
    const silent = new OutboxWriter({ schema: bed.t.schema, notifyIntervalMs: false });
    const started = Date.now();
    await bed.t.db
      .transaction()
      .execute((trx) => silent.add(trx, { exchange, routingKey: 'k', payload: 'second' }));
    await bed.broker.waitForDepth(queue, 2, 10_000);
    const latency = Date.now() - started;
    assert.ok(latency < 5000, `took ${latency} ms with a 30 s poll interval`);
  });

  it('parks an unroutable message instead of deleting it, and publishes the rest', async () => {
    const exchange = await bed.broker.exchange('unroutable');
    const queue = await bed.broker.queue('unroutable', exchange, 'routed');
    await writeMessages(bed.t, [
      { exchange, routingKey: 'nowhere', payload: 'lost?', messageId: 'u1' },
      { exchange, routingKey: 'routed', payload: 'fine', messageId: 'r1' },
    ]);
    const relay = await start();
    await waitFor('both rows settled', () => relay.stats().published + relay.stats().parked === 2);
    const { rows } = await bed.t.pool.query(
      `SELECT message_id, reason FROM "${bed.t.schema}".outbox_parked`,
    );
    assert.deepEqual(
      rows.map((r) => r.message_id),
      ['u1'],
    );
    assert.match(rows[0].reason, /unroutable: 312 NO_ROUTE/);
    assert.equal(await bed.t.count(), 0);
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), ['fine']);
  });

  it("with retry.unroutable, retries an unroutable row, in its key's order, until its queue is bound", async () => {
    const exchange = await bed.broker.exchange('late-binding');
    await writeMessages(bed.t, [
      { exchange, routingKey: 'late', payload: 'first', orderingKey: 'key', messageId: 'l1' },
      { exchange, routingKey: 'late', payload: 'second', orderingKey: 'key', messageId: 'l2' },
    ]);
    const relay = await start({
      retry: { unroutable: true, maxAttempts: 50, backoff: { initialMs: 20, maxMs: 100 } },
    });
    const attemptsOf = async (messageId: string) => {
      const { rows } = await bed.t.pool.query<{ attempts: number }>(
        `SELECT attempts FROM "${bed.t.schema}".outbox WHERE message_id = $1`,
        [messageId],
      );
      return rows[0]?.attempts;
    };
    // Returned twice: still in the outbox, tried again, and its successor still waits.
    await waitFor('the first row returned twice', async () => ((await attemptsOf('l1')) ?? 0) >= 2);
    assert.equal(await attemptsOf('l2'), 0, 'the second row was tried before the first');
    assert.equal(relay.stats().parked, 0);
    // The consumer's queue appears: both go, in order, and nothing is parked.
    const queue = await bed.broker.queue('late-binding', exchange, 'late');
    await bed.broker.waitForDepth(queue, 2, 15_000);
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), ['first', 'second']);
    assert.equal(relay.stats().parked, 0);
    await waitFor('the outbox emptied', async () => (await bed.t.count()) === 0);
  });

  it('with retry.unroutable, parks a row still unroutable after maxAttempts', async () => {
    const exchange = await bed.broker.exchange('never-bound');
    await writeMessages(bed.t, [
      { exchange, routingKey: 'nowhere', payload: 'x', messageId: 'n1' },
    ]);
    const relay = await start({
      retry: { unroutable: true, maxAttempts: 3, backoff: { initialMs: 20, maxMs: 50 } },
    });
    await waitFor('the row parked', () => relay.stats().parked === 1);
    const { rows } = await bed.t.pool.query(
      `SELECT message_id, reason, attempts FROM "${bed.t.schema}".outbox_parked`,
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].message_id, 'n1');
    // The reason keeps its prefix: `outboxkit dead-letters replay --reason unroutable` finds it.
    assert.match(rows[0].reason, /^unroutable: 312 NO_ROUTE \(returned 3 times\)$/);
    // Tried 3 times, as the reason says: the attempt that parked it counts too.
    assert.equal(rows[0].attempts, 3);
    assert.equal(relay.stats().retried, 2);
  });

  it('with retry.unroutable, counts only returns towards maxAttempts, not the nacks and time-outs before them', async () => {
    const exchange = await bed.broker.exchange('nacked-then-unbound');
    await writeMessages(bed.t, [
      { exchange, routingKey: 'nowhere', payload: 'x', messageId: 'nacked-5' },
    ]);
    // As five nacks (a full queue, an outage) leave a row: tried five times, nothing counted.
    // They counted: its first return parked it, "returned 6 times" (found by a probe).
    await bed.t.pool.query(
      `UPDATE "${bed.t.schema}".outbox SET attempts = 5, last_error = 'nacked by the broker'`,
    );
    const relay = await start({
      retry: { unroutable: true, maxAttempts: 3, backoff: { initialMs: 20, maxMs: 50 } },
    });
    await waitFor('the row parked', () => relay.stats().parked === 1);
    const { rows } = await bed.t.pool.query(
      `SELECT reason, attempts FROM "${bed.t.schema}".outbox_parked`,
    );
    assert.match(rows[0].reason, /^unroutable: 312 NO_ROUTE \(returned 3 times\)$/);
    assert.equal(rows[0].attempts, 8, 'every try, the nacks included');
    assert.equal(relay.stats().retried, 2);
  });

  it('delivers through an alternate exchange and deletes the row', async () => {
    const alternate = await bed.broker.exchange('ae', 'fanout');
    const aeQueue = await bed.broker.queue('ae', alternate, '');
    const exchange = await bed.broker.exchange('with-ae', 'direct', {
      alternateExchange: alternate,
    });
    await writeMessages(bed.t, [{ exchange, routingKey: 'unbound', payload: 'to the AE' }]);
    const relay = await start();
    await waitFor('the row to be published', () => relay.stats().published === 1);
    assert.equal(relay.stats().parked, 0);
    assert.equal(await bed.t.count(), 0);
    assert.deepEqual((await bed.broker.drain(aeQueue)).map(payloadOf), ['to the AE']);
  });

  it('puts off rows for a missing exchange without stalling other destinations, and publishes them once it exists', async () => {
    const exchange = await bed.broker.exchange('exists');
    const queue = await bed.broker.queue('exists', exchange);
    const missing = bed.broker.name('declared-late');
    const messages = Array.from({ length: 20 }, (_, i) => ({
      exchange: i % 2 === 0 ? exchange : missing,
      routingKey: 'k',
      payload: { i },
    }));
    await writeMessages(bed.t, messages, 3);
    const relay = await start({ batchSize: 5, retry: { maxAttempts: 2 } });
    await waitFor('the rows of the missing exchange put off twice', async () => {
      const { rows } = await bed.t.pool.query(
        `SELECT count(*)::int AS n FROM "${bed.t.schema}".outbox WHERE last_error = $1`,
        [`exchange not found: ${missing}`],
      );
      return relay.stats().published === 10 && rows[0].n === 10 && relay.stats().deferred >= 20;
    });
    assert.equal(relay.stats().parked, 0);
    const { rows: attempts } = await bed.t.pool.query(
      `SELECT max(attempts)::int AS n FROM "${bed.t.schema}".outbox`,
    );
    assert.equal(attempts[0].n, 0, 'a missing exchange was charged to the messages');
    await bed.broker.exchange('declared-late');
    const late = await bed.broker.queue('late', missing);
    await waitFor('every row published', async () => (await bed.t.count()) === 0, 20_000);
    assert.equal(relay.stats().parked, 0);
    assert.equal((await bed.broker.drain(queue)).length, 10);
    assert.equal((await bed.broker.drain(late)).length, 10);
  });

  it('routes each of two rows with one message id by its own return, not by the id', async () => {
    const exchange = await bed.broker.exchange('same-id', 'direct');
    const queue = await bed.broker.queue('same-id', exchange, 'bound');
    const pairs = 300;
    await writeMessages(
      bed.t,
      Array.from({ length: pairs * 2 }, (_, i) => ({
        exchange,
        routingKey: i % 2 === 0 ? 'bound' : 'nowhere',
        payload: { i },
        messageId: `pair-${i >> 1}`,
      })),
      // One row per transaction: one addMany refuses an id twice for one exchange, but rows
      // with one id still meet in the outbox when written by separate transactions.
      1,
    );
    const relay = await start({ batchSize: 200 });
    await waitFor(
      'all rows settled',
      () => relay.stats().published + relay.stats().parked === pairs * 2,
    );
    const { rows } = await bed.t.pool.query(
      `SELECT routing_key, count(*)::int AS n FROM "${bed.t.schema}".outbox_parked GROUP BY 1`,
    );
    assert.deepEqual(rows, [{ routing_key: 'nowhere', n: pairs }]);
    const delivered = (await bed.broker.drain(queue)).map((m) => (payloadOf(m) as { i: number }).i);
    assert.equal(delivered.length, pairs);
    assert.ok(delivered.every((i) => i % 2 === 0));
  });

  it('parks a message larger than the broker accepts', async () => {
    const exchange = await bed.broker.exchange('large');
    const queue = await bed.broker.queue('large', exchange);
    await writeMessages(bed.t, [
      { exchange, routingKey: 'k', payload: 'x'.repeat(5000) },
      { exchange, routingKey: 'k', payload: 'small' },
    ]);
    const relay = await start({ maxMessageBytes: 1000 });
    await waitFor('both rows settled', () => relay.stats().published + relay.stats().parked === 2);
    const { rows } = await bed.t.pool.query(`SELECT reason FROM "${bed.t.schema}".outbox_parked`);
    assert.match(rows[0].reason, /too large: 5002 bytes, limit 1000/);
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), ['small']);
  });

  // pg reads a bytea as hex text: a payload of over ~268 MB, which only SQL can write (the
  // writer's limit is 128 MiB), made the relay's process die at each claim, for ever.
  it('parks a row too large to read, written by SQL, without reading it', async () => {
    const exchange = await bed.broker.exchange('huge');
    const queue = await bed.broker.queue('huge', exchange);
    const bytes = 300_000_000;
    // Compressible, so Postgres stores it in a few MB.
    await bed.t.pool.query(
      `INSERT INTO "${bed.t.schema}".outbox (message_id, exchange, routing_key, payload, content_type)
       VALUES ('huge', $1, 'k', convert_to(repeat('a', ${bytes}), 'UTF8'), 'application/octet-stream')`,
      [exchange],
    );
    await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'small' }]);
    const relay = await start();
    await waitFor(
      'both rows settled',
      () => relay.stats().published + relay.stats().parked === 2,
      60_000,
    );
    const { rows } = await bed.t.pool.query(
      `SELECT message_id, reason, octet_length(payload) AS bytes FROM "${bed.t.schema}".outbox_parked`,
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].message_id, 'huge');
    assert.match(rows[0].reason, new RegExp(`too large: ${bytes} bytes, limit 134217728`));
    assert.equal(rows[0].bytes, bytes, 'parked whole');
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), ['small']);
  });

  it('retries nacked messages until there is room, losing none', async () => {
    const exchange = await bed.broker.exchange('nack');
    // A full queue that rejects publishes makes the broker nack: forced nacks.
    const queue = await bed.broker.queue('nack', exchange, '#', {
      arguments: { 'x-max-length': 10, 'x-overflow': 'reject-publish' },
    });
    const total = 40;
    await writeMessages(
      bed.t,
      Array.from({ length: total }, (_, i) => ({ exchange, routingKey: 'k', payload: { i } })),
    );
    const relay = await start({ retry: { maxAttempts: 1000 } });
    const received = new Set<number>();
    await waitFor('every message to get through a queue of 10', async () => {
      for (const m of await bed.broker.drain(queue))
        received.add((payloadOf(m) as { i: number }).i);
      return received.size === total && (await bed.t.count()) === 0;
    });
    assert.ok(relay.stats().retried > 0, 'no nack was forced');
    assert.equal(relay.stats().parked, 0);
    const { rows } = await bed.t.pool.query(
      `SELECT count(*)::int AS n FROM "${bed.t.schema}".outbox_parked`,
    );
    assert.equal(rows[0].n, 0);
  });

  it('never parks a row for nacks, however many, and keeps its key waiting behind it', async () => {
    const exchange = await bed.broker.exchange('exhaust', 'direct');
    const full = await bed.broker.queue('exhaust-full', exchange, 'k', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    await writeMessages(bed.t, [
      { exchange, routingKey: 'k', payload: 'first', orderingKey: 'key' },
      { exchange, routingKey: 'k', payload: 'second', orderingKey: 'key' },
    ]);
    const relay = await start({ retry: { maxAttempts: 2 } });
    await waitFor('the first row nacked well past maxAttempts', async () => {
      const { rows } = await bed.t.pool.query(
        `SELECT attempts, last_error FROM "${bed.t.schema}".outbox ORDER BY id LIMIT 1`,
      );
      return rows[0].attempts >= 5 ? rows[0] : undefined;
    });
    // The relay counts a batch's retries once its COMMIT has come back, a moment after the rows
    // show the attempts to another session.
    await waitFor('the retries counted', () => relay.stats().infrastructureRetries >= 5);
    assert.equal(relay.stats().parked, 0);
    const { rows } = await bed.t.pool.query(
      `SELECT last_error FROM "${bed.t.schema}".outbox ORDER BY id LIMIT 1`,
    );
    assert.match(rows[0].last_error, /nacked/);
    // Room again: a queue that takes messages, and the rejecting one gone.
    const queue = await bed.broker.queue('exhaust', exchange, 'k');
    await bed.broker.channel.deleteQueue(full);
    await waitFor('both rows published', async () => (await bed.t.count()) === 0, 20_000);
    assert.equal(relay.stats().parked, 0);
    assert.deepEqual((await bed.broker.drain(queue)).map(payloadOf), ['first', 'second']);
  });

  it('publishes a delayed message only once its delay has passed', async () => {
    const exchange = await bed.broker.exchange('delay');
    const queue = await bed.broker.queue('delay', exchange);
    const relay = await start({ pollIntervalMs: 5000 });
    await waitFor('the relay to listen', () => relay.listenConnects === 1 && relay.isConnected);
    const written = Date.now();
    await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'later', delayMs: 700 }]);
    await bed.broker.waitForDepth(queue, 1, 10_000);
    const elapsed = Date.now() - written;
    assert.ok(elapsed >= 650, `published after ${elapsed} ms, before its delay`);
    assert.ok(elapsed < 4500, `published after ${elapsed} ms, long after its delay`);
  });

  it("waits for a delayed message on the database's clock: an application clock ahead of it does not make the lanes claim in a loop", async (t) => {
    const exchange = await bed.broker.exchange('skew');
    const queue = await bed.broker.queue('skew', exchange);
    // Its own pool, whose checkouts are the relay's claims (and its LISTEN).
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 8 });
    let checkouts = 0;
    pool.on('acquire', () => {
      checkouts += 1;
    });
    let relay: OutboxRelay | undefined;
    try {
      const written = performance.now();
      await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'later', delayMs: 1500 }]);
      // This host's clock runs a minute ahead of the database's.
      const wallClock = Date.now;
      t.mock.method(Date, 'now', () => wallClock() + 60_000);
      relay = await start({ pool, pollIntervalMs: 5000 });
      await bed.broker.waitForDepth(queue, 1, 10_000);
      assert.ok(performance.now() - written >= 1400, 'published before its delay');
      await relay.stop();
      // Each lane claims at the start, sleeps until the row is due and claims it: a handful.
      // Going by the application's clock, the five lanes claimed every 5 ms until it was due.
      assert.ok(checkouts < 80, `${checkouts} checkouts while one delayed row waited`);
    } finally {
      t.mock.restoreAll();
      await relay?.stop();
      await pool.end();
    }
  });

  it('waits for a delayed message on a pool that parses timestamptz as text, without lane errors', async () => {
    const exchange = await bed.broker.exchange('textts');
    const queue = await bed.broker.queue('textts', exchange);
    const pool = new pg.Pool({
      connectionString: DATABASE_URL,
      max: 8,
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === pg.types.builtins.TIMESTAMPTZ
            ? (value: string) => value
            : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
    let relay: OutboxRelay | undefined;
    try {
      await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'later', delayMs: 700 }]);
      relay = await start({ pool, pollIntervalMs: 5000 });
      await bed.broker.waitForDepth(queue, 1, 10_000);
      assert.equal(relay.stats().errors, 0);
    } finally {
      await relay?.stop();
      await pool.end();
    }
  });

  it('stops gracefully: in-flight rows are settled and later rows stay for the next relay', async () => {
    const exchange = await bed.broker.exchange('stop');
    const queue = await bed.broker.queue('stop', exchange);
    const total = 5000;
    await writeMessages(
      bed.t,
      Array.from({ length: total }, (_, i) => ({ exchange, routingKey: 'k', payload: { i } })),
    );
    const relay = testRelay(bed.t, { batchSize: 200 });
    await relay.start();
    await waitFor('some rows published', () => relay.stats().published > 0);
    await relay.stop();
    const left = await bed.t.count();
    const queued = await bed.broker.depth(queue);
    // Everything is either still in the outbox or in the queue; nothing was published twice.
    assert.equal(left + queued, total);
    assert.equal(relay.stats().published, queued);
    // No session of this test's pool was left inside a transaction holding claimed rows.
    const { rows } = await bed.t.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE state LIKE 'idle in transaction%' AND query LIKE '%' || $1 || '%'`,
      [bed.t.schema],
    );
    assert.equal(rows[0].n, 0);
    const next = await start();
    await waitFor('the next relay to finish', async () => (await bed.t.count()) === 0);
    assert.equal(await bed.broker.depth(queue), total);
    // A batch counts itself once its COMMIT has returned, a moment after the rows are gone: with
    // two batches per lane in flight, several may still be on their way here.
    await waitFor('the next relay to count its batches', () => next.stats().published >= left);
    assert.equal(next.stats().published, left);
  });
  it('a second stop() resolves only once the relay has stopped', async () => {
    const exchange = await bed.broker.exchange('stop-twice');
    await bed.broker.queue('stop-twice', exchange);
    await writeMessages(bed.t, numberedMessages(exchange, 500, 'twice-'));
    const relay = await start();
    await waitFor('some rows published', () => relay.stats().published > 0);
    let firstDone = false;
    const first = relay.stop().then(() => {
      firstDone = true;
    });
    await relay.stop();
    assert.equal(firstDone, true, 'the second stop() returned before the first finished');
    assert.equal(relay.isConnected, false);
    await first;
  });

  it('a stop() while start() checks the services: start rejects and starts nothing after it', async () => {
    const infos: string[] = [];
    const noop = () => {};
    const relay = testRelay(bed.t, {
      logger: {
        debug: noop,
        info: (message: string) => infos.push(message),
        warn: noop,
        error: noop,
      },
    });
    const starting = relay.start();
    await relay.stop();
    await assert.rejects(starting, (error: unknown) => {
      assert.ok(error instanceof StateError, String(error));
      assert.match(error.message, /stopped while it was starting/);
      return true;
    });
    assert.deepEqual(
      infos.filter((m) => m === 'relay started'),
      [],
    );
  });

  it('a stop right after the start, with a backlog, is no batch failure', async () => {
    // Lanes claim at once; stop() then refuses them a channel. That is the stop, not a failure:
    // no warning (and no error counted, which alerts may watch), and every row stays.
    const exchange = await bed.broker.exchange('stop-at-once');
    await bed.broker.queue('stop-at-once', exchange);
    await writeMessages(bed.t, numberedMessages(exchange, 200, 'stop-'));
    const warnings: string[] = [];
    const log = (message: string, context?: Record<string, unknown>) => {
      warnings.push(`${message} ${JSON.stringify(context ?? {})}`);
    };
    const noop = () => {};
    const relay = await start({ logger: { debug: noop, info: noop, warn: log, error: log } });
    await relay.stop();
    assert.deepEqual(warnings, []);
    assert.equal(relay.stats().errors, 0);
    assert.equal((await bed.t.count()) + relay.stats().published, 200);
  });
});
