import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import pg from 'pg';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { relayQueries } from '../src/relay/relay-queries.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { readOnlyRole } from './support/read-only-role.js';
import { recordingLogger } from './support/recording-logger.js';
import { numberedMessages, testRelay, writeMessages } from './support/relay-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

describe('the relay and its database', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let relays: OutboxRelay[] = [];
  before(async () => {
    t = await testDatabase('reldb');
    broker = await TestBroker.open();
  });
  afterEach(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
    await t.pool.query(`TRUNCATE "${t.schema}".outbox`);
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('claims with an index scan, also over a large table', async () => {
    await t.pool.query(
      `INSERT INTO "${t.schema}".outbox (message_id, exchange, routing_key, payload, content_type, ordering_key)
       SELECT g::text, 'x', 'k', '\\x00', 'application/json', CASE WHEN g % 3 = 0 THEN (g % 100)::text END
       FROM generate_series(1, 100000) g`,
    );
    await t.pool.query(`ANALYZE "${t.schema}".outbox`);
    const queries = relayQueries(t.schema);
    for (const claim of [queries.claimFresh, queries.claimRetry]) {
      const client = await t.pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${claim}`, [500]);
        await client.query('ROLLBACK');
        const plan = JSON.stringify(rows[0]['QUERY PLAN']);
        assert.doesNotMatch(plan, /Seq Scan/, plan);
        assert.match(plan, /Index (Only )?Scan/);
      } finally {
        client.release();
      }
    }
  });

  it('recovers when Postgres terminates its connections mid-stream', async () => {
    const exchange = await broker.exchange('terminate');
    const queue = await broker.queue('terminate', exchange);
    const total = 4000;
    await writeMessages(t, numberedMessages(exchange, total, 'p'), 1000);
    // The relay gets a pool of its own, named, so that only its backends are killed.
    const applicationName = `relay_${t.schema}`;
    const pool = new pg.Pool({ connectionString: DATABASE_URL, application_name: applicationName });
    pool.on('error', () => {});
    const relay = testRelay(t, { pool, batchSize: 100 });
    relays = [relay];
    try {
      await relay.start();
      await waitFor('a first part published', () => relay.stats().published >= 300);
      const { rows } = await t.pool.query(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1`,
        [applicationName],
      );
      assert.ok(rows[0].n > 1, 'the lanes and the listener were not all terminated');
      await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
    } finally {
      await relay.stop();
      await pool.end();
    }
    const messages = await broker.drain(queue);
    assert.equal(new Set(messages.map((m) => m.properties.messageId)).size, total);
    assert.ok(
      relay.stats().errors > 0 || relay.listenConnects > 1,
      'the relay never saw the fault',
    );
  });

  it('listens again after its LISTEN connection is killed', async () => {
    const exchange = await broker.exchange('relisten');
    const queue = await broker.queue('relisten', exchange);
    const logger = recordingLogger();
    const relay = testRelay(t, { pollIntervalMs: 60_000, logger });
    relays = [relay];
    await relay.start();
    await waitFor('the relay to listen', () => relay.listenConnects === 1 && relay.isConnected);
    const { rows } = await t.pool.query(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))::int AS n
           FROM pg_stat_activity
       WHERE query = $1`,
      [relayQueries(t.schema).listen],
    );
    assert.equal(rows[0].n, 1);
    await waitFor('the relay to listen again', () => relay.listenConnects === 2);
    // Told at the level of the loss, so a log kept at warn does not end on it (a probe).
    const listenLines = logger.lines.filter((l) => l.text.startsWith('LISTEN connection'));
    assert.deepEqual(
      listenLines.map((l) => l.level),
      ['warn', 'warn'],
    );
    assert.match(listenLines[1]!.text, /^LISTEN connection made again/);
    const started = Date.now();
    await writeMessages(t, [{ exchange, routingKey: 'k', payload: 'after the cut' }]);
    await broker.waitForDepth(queue, 1, 10_000);
    assert.ok(Date.now() - started < 5000, 'woken by the poll, not by a notification');
  });

  /** A started relay on `databaseUrl`, whose claims are expected to fail, retried quickly. */
  const failingRelay = async (
    databaseUrl: string,
    concurrency: number,
    logger: ReturnType<typeof recordingLogger>,
  ) => {
    const relay = new OutboxRelay({
      databaseUrl,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      concurrency,
      reconnectBackoff: { initialMs: 20, maxMs: 100 },
      logger,
    });
    relays.push(relay);
    await relay.start();
    return relay;
  };

  it('warns once per database outage, not once per lane and retry, and says when it is back', async () => {
    const port = await TcpProxy.freePort();
    const down = new URL(DATABASE_URL);
    down.port = String(port);
    const logger = recordingLogger();
    const relay = await failingRelay(down.toString(), 4, logger);
    await waitFor('the lanes failing again and again', () => relay.stats().errors >= 20);
    const warnings = logger.lines.filter(
      (l) => l.level === 'warn' && l.text.startsWith('relay batch failed'),
    );
    assert.equal(warnings.length, 1, warnings.map((w) => w.text).join('\n'));
    assert.equal(relay.databaseProblem?.kind, 'unreachable');
    const { hostname, port: pgPort } = new URL(DATABASE_URL);
    const proxy = await TcpProxy.start(hostname, Number(pgPort || 5432), port);
    try {
      await waitFor('the relay back on its database', () =>
        logger.lines.some((l) => l.text.startsWith('relay reaches the database again')),
      );
      assert.equal(relay.databaseProblem, undefined);
      await relay.stop();
    } finally {
      await proxy.close();
    }
  });
  // A standby (a failover that left the address on the demoted primary) or a database under
  // default_transaction_read_only is reached and answers: called "unreachable", it sent
  // operators looking for a network fault.
  it('says the database is read-only, not unreachable, and when it takes writes again', async () => {
    const exchange = await broker.exchange('read-only');
    const queue = await broker.queue('read-only', exchange);
    const role = await readOnlyRole(t.pool, t.schema);
    try {
      const logger = recordingLogger();
      const relay = await failingRelay(role.url, 2, logger);
      await writeMessages(t, [{ exchange, routingKey: 'k', payload: 'while read-only' }]);
      await waitFor('the claims refused', () => relay.stats().errors >= 5, 10_000);
      assert.equal(relay.databaseProblem?.kind, 'read-only');
      const warnings = logger.lines.filter(
        (l) => l.level === 'warn' && l.text.startsWith('relay batch failed'),
      );
      assert.equal(warnings.length, 1, warnings.map((w) => w.text).join('\n'));
      assert.match(warnings[0]!.text, /^relay batch failed: the database is read-only/);
      await role.reset();
      await broker.waitForDepth(queue, 1, 10_000);
      assert.ok(
        logger.lines.some((l) =>
          l.text.startsWith('relay reaches the database again {"after":"read-only"}'),
        ),
      );
      assert.equal(relay.databaseProblem, undefined);
      await relay.stop();
    } finally {
      await role.drop();
    }
  });
});
