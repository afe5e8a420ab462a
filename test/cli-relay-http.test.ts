import assert from 'node:assert/strict';
import { type AddressInfo, createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { CLI_MAIN, NodeChild } from './support/child-process.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { PoolerFront } from './support/pooler-front.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const ENV: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL, AMQP_URL };
const children = new Set<NodeChild>();

function relayProcess(args: readonly string[], env: NodeJS.ProcessEnv = ENV): NodeChild {
  const child = new NodeChild(CLI_MAIN, ['relay', '--http-port', '0', ...args], env);
  children.add(child);
  return child;
}

/** The endpoints' base URL, from the relay's "relay http" log line. */
async function baseUrlOf(child: NodeChild): Promise<string> {
  return waitFor('the relay http log line', () => {
    assert.ok(child.running, `relay exited: ${child.stderr}`);
    const line = child.stderr.split('\n').find((l) => l.includes('"relay http"'));
    return line ? (JSON.parse(line) as { url: string }).url : undefined;
  });
}

after(() => {
  for (const child of children) child.kill();
});

describe('outboxkit relay --http-port', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('cli_http');
    broker = await TestBroker.open();
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('answers /health 200 once connected, and /metrics counts what it published', async () => {
    const exchange = await broker.exchange('orders');
    const queue = await broker.queue('orders.q', exchange);
    const relay = relayProcess(['--schema', t.schema, '--poll-interval', '100ms']);
    const base = await baseUrlOf(relay);
    const health = await waitFor('health 200', async () => {
      const response = await fetch(`${base}/health`);
      return response.status === 200 ? response : undefined;
    });
    assert.deepEqual(await health.json(), {
      status: 'ok',
      running: true,
      connected: true,
      database: 'ok',
    });

    const writer = new OutboxWriter({ schema: t.schema });
    await t.db
      .transaction()
      .execute((trx) =>
        writer.add(trx, { exchange, routingKey: 'order.placed', payload: { n: 1 } }),
      );
    await broker.waitForDepth(queue, 1);
    const metrics = await waitFor('the publish in /metrics', async () => {
      const text = await (await fetch(`${base}/metrics`)).text();
      return /^outboxkit_relay_published_total 1$/m.test(text) ? text : undefined;
    });
    assert.match(metrics, /^# TYPE outboxkit_relay_published_total counter$/m);
    // The outbox gauges come from the database.
    assert.match(metrics, /^outboxkit_outbox_/m);
    assert.equal((await fetch(`${base}/nope`)).status, 404);

    assert.equal((await relay.stop()).code, 0);
  });

  // The gauges' connection sent statement_timeout as a startup parameter, which PgBouncer refuses:
  // behind one, every scrape went without them while /health said ok.
  it('has the outbox gauges in /metrics behind a pooler that refuses startup parameters', async () => {
    const front = await PoolerFront.open({
      host: new URL(DATABASE_URL).hostname,
      port: Number(new URL(DATABASE_URL).port || 5432),
    });
    try {
      const relay = relayProcess(['--schema', t.schema], {
        ...ENV,
        DATABASE_URL: front.url(DATABASE_URL),
      });
      const base = await baseUrlOf(relay);
      await waitFor('health 200', async () => (await fetch(`${base}/health`)).status === 200);
      const text = await (await fetch(`${base}/metrics`)).text();
      assert.match(text, /^outboxkit_outbox_oldest_pending_age_seconds /m);
      assert.deepEqual(front.refused, []);
      assert.equal((await relay.stop()).code, 0);
    } finally {
      await front.close();
    }
  });

  it('answers /metrics within seconds while the database stalls, without the outbox gauges', async () => {
    const relay = relayProcess(['--schema', t.schema]);
    const base = await baseUrlOf(relay);
    await waitFor('health 200', async () => (await fetch(`${base}/health`)).status === 200);
    const scrape = async () => {
      const began = Date.now();
      const text = await (await fetch(`${base}/metrics`)).text();
      return { text, ms: Date.now() - began };
    };
    assert.match((await scrape()).text, /^outboxkit_outbox_oldest_pending_age_seconds /m);
    // The gauges' statement waits behind this lock, as behind a stalled database.
    const locker = await t.pool.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${t.schema}".outbox_parked IN ACCESS EXCLUSIVE MODE`);
      for (const which of ['first', 'second']) {
        const { text, ms } = await scrape();
        assert.ok(ms < 6_000, `${which} scrape took ${ms} ms`);
        assert.match(text, /^outboxkit_relay_published_total /m, which);
        assert.doesNotMatch(text, /^outboxkit_outbox_/m, which);
      }
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    await waitFor('the gauges back', async () =>
      /^outboxkit_outbox_oldest_pending_age_seconds /m.test((await scrape()).text),
    );
    assert.equal((await relay.stop()).code, 0);
  });

  it('answers /health 503 while RabbitMQ cannot be reached, /live 200', async () => {
    // At `--log-level warn` too: the port the system chose was logged at info only (a probe).
    const relay = relayProcess(['--schema', t.schema, '--log-level', 'warn'], {
      ...ENV,
      AMQP_URL: 'amqp://guest:guest@127.0.0.1:1',
    });
    const base = await baseUrlOf(relay);
    const health = await fetch(`${base}/health`);
    assert.equal(health.status, 503);
    assert.deepEqual(await health.json(), {
      status: 'unavailable',
      running: true,
      connected: false,
      database: 'ok',
    });
    assert.equal((await fetch(`${base}/live`)).status, 200);
    assert.equal((await relay.stop()).code, 0);
  });

  it('answers /health 503 while Postgres cannot be reached, and 200 once it can', async () => {
    const port = await TcpProxy.freePort();
    const down = new URL(DATABASE_URL);
    down.port = String(port);
    const relay = relayProcess(['--schema', t.schema], { ...ENV, DATABASE_URL: down.toString() });
    const base = await baseUrlOf(relay);
    const unavailable = await waitFor('health 503 for the database', async () => {
      const response = await fetch(`${base}/health`);
      const body = (await response.json()) as Record<string, unknown>;
      return response.status === 503 && body.database === 'unreachable' ? body : undefined;
    });
    assert.equal(unavailable.connected, true);
    assert.match(String(unavailable.error), /ECONNREFUSED|connect/);
    assert.equal((await fetch(`${base}/live`)).status, 200);
    const { hostname, port: pgPort } = new URL(DATABASE_URL);
    const proxy = await TcpProxy.start(hostname, Number(pgPort || 5432), port);
    try {
      await waitFor('health 200', async () => (await fetch(`${base}/health`)).status === 200);
      assert.equal((await relay.stop()).code, 0);
    } finally {
      await proxy.close();
    }
  });

  it('exits 1 naming the migrate command when the schema, unseen at a start with Postgres down, is not migrated', async () => {
    const port = await TcpProxy.freePort();
    const down = new URL(DATABASE_URL);
    down.port = String(port);
    const relay = relayProcess(['--schema', `${t.schema}_never_migrated`], {
      ...ENV,
      DATABASE_URL: down.toString(),
    });
    await baseUrlOf(relay);
    const { hostname, port: pgPort } = new URL(DATABASE_URL);
    const proxy = await TcpProxy.start(hostname, Number(pgPort || 5432), port);
    try {
      const { code } = await relay.exited();
      assert.equal(code, 1, relay.stderr);
      assert.match(relay.stderr, /has no outboxkit tables: run `outboxkit migrate --schema/);
    } finally {
      await proxy.close();
    }
  });

  it('names --http-port when its port is taken', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const { port } = taken.address() as AddressInfo;
    try {
      const relay = new NodeChild(
        CLI_MAIN,
        ['relay', '--schema', t.schema, '--http-port', String(port)],
        ENV,
      );
      children.add(relay);
      assert.equal((await relay.exited()).code, 2, relay.stderr);
      assert.match(
        relay.stderr,
        new RegExp(`--http-port ${port} .*EADDRINUSE.*give another --http-port`),
      );
    } finally {
      taken.close();
    }
  });

  it('rejects a port that is not one', async () => {
    const relay = new NodeChild(CLI_MAIN, ['relay', '--http-port', 'http'], ENV);
    children.add(relay);
    assert.equal((await relay.exited()).code, 2);
    assert.match(relay.stderr, /--http-port must be a port number/);
  });
});
