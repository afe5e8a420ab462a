import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { migrate } from '../src/migrate/migrate.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { CLI_MAIN, NodeChild } from './support/child-process.js';
import { deleteConsumerTopology } from './support/delete-consumer-topology.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

// A relay and a consumer, each a process of its own (an unhandled 'error' would end it), have
// every Postgres session terminated at each stage of their lives. None may die; afterwards every
// message has its effect exactly once. Sessions are found by application names unique to this
// run, so nothing else on the shared Postgres is touched.

const CONSUMER_CHILD = fileURLToPath(new URL('./support/consumer-child.js', import.meta.url));

describe("sessions terminated at every stage of a relay's and a consumer's life", () => {
  const tag = uniqueName('okt_life');
  const schema = tag;
  const exchange = `${tag}.events`;
  const relayApp = `${tag}_relay`;
  const consumerApp = `${tag}_consumer`;
  const writer = new OutboxWriter({ schema });
  const children: NodeChild[] = [];
  const written: string[] = [];
  const kills: Record<string, number> = {};
  let admin: pg.Pool;

  const urlFor = (applicationName: string) => {
    const url = new URL(DATABASE_URL);
    url.searchParams.set('application_name', applicationName);
    return url.toString();
  };

  before(async () => {
    admin = new pg.Pool({ connectionString: urlFor(`${tag}_admin`), max: 4 });
    admin.on('error', () => {});
    await migrate(admin, { schema });
    await admin.query(
      `CREATE TABLE "${schema}".effects (id bigserial PRIMARY KEY, msg_id text NOT NULL)`,
    );
  });

  after(async () => {
    for (const child of children) child.kill();
    // As the consumer child declares them (test/support/consumer-child.ts).
    await deleteConsumerTopology([
      { name: tag, exchange, retry: { maxAttempts: 20, backoff: { initialMs: 50, maxMs: 300 } } },
    ]);
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
    console.log(`sessions terminated per stage: ${JSON.stringify(kills)}`);
  });

  async function sessions(applicationName: string, where = 'true') {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND (${where})`,
      [applicationName],
    );
    return rows;
  }

  /**
   * Terminates the sessions of these application names (this run's only); counts them per stage.
   * Waits for each to exit: a terminated backend stays in pg_stat_activity, with its last query
   * and state, until it has gone, and a later look must not take it for a live session.
   */
  async function terminate(stage: string, names: readonly string[], where = 'true') {
    const { rows } = await admin.query<{ n: number }>(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))::int AS n
       FROM pg_stat_activity WHERE application_name = ANY($1) AND (${where})`,
      [names],
    );
    kills[stage] = (kills[stage] ?? 0) + rows[0]!.n;
    return rows[0]!.n;
  }

  async function write(n: number, extra: { delayMs?: number; slowMs?: number } = {}) {
    const client = await admin.connect();
    try {
      await client.query('BEGIN');
      const ids = Array.from({ length: n }, () => uniqueName('m'));
      await writer.addMany(
        client,
        ids.map((id) => ({
          exchange,
          routingKey: 'life.event',
          messageId: id,
          payload: { id, ...(extra.slowMs !== undefined && { slowMs: extra.slowMs }) },
          ...(extra.delayMs !== undefined && { delayMs: extra.delayMs }),
        })),
      );
      await client.query('COMMIT');
      written.push(...ids);
    } finally {
      client.release();
    }
  }

  async function effected(): Promise<Map<string, number>> {
    const { rows } = await admin.query<{ msg_id: string; n: number }>(
      `SELECT msg_id, count(*)::int AS n FROM "${schema}".effects GROUP BY msg_id`,
    );
    return new Map(rows.map((r) => [r.msg_id, r.n]));
  }

  /** Waits for every message's effect; fails at once when one of `processes` died meanwhile. */
  async function allEffected(...processes: NodeChild[]) {
    await waitFor(
      `${written.length} messages with an effect`,
      async () => {
        alive(...processes);
        const effects = await effected();
        return written.every((id) => effects.has(id));
      },
      30_000,
      100,
    );
  }

  function spawnRelay(): NodeChild {
    const relay = new NodeChild(
      CLI_MAIN,
      [
        'relay',
        '--schema',
        schema,
        '--poll-interval',
        '200ms',
        '--publish-timeout',
        '2s',
        '--heartbeat',
        '1',
        '--stop-timeout',
        '3s',
        '--log-level',
        'info',
      ],
      { ...process.env, DATABASE_URL: urlFor(relayApp), AMQP_URL },
    );
    children.push(relay);
    return relay;
  }

  function spawnConsumer(): NodeChild {
    const consumer = new NodeChild(CONSUMER_CHILD, [], {
      ...process.env,
      DATABASE_URL: urlFor(consumerApp),
      AMQP_URL,
      OKT_SCHEMA: schema,
      OKT_EXCHANGE: exchange,
      OKT_CONSUMER: tag,
    });
    children.push(consumer);
    return consumer;
  }

  function alive(...processes: NodeChild[]) {
    for (const p of processes) {
      assert.equal(p.running, true, `a process died: ${JSON.stringify(p.outcome)}\n${p.stderr}`);
    }
  }

  const listening = `query LIKE 'LISTEN%' AND state = 'idle'`;

  it('no process dies, and every message has its effect once', { timeout: 120_000 }, async () => {
    // Starting: the consumer declares the exchange, so it comes first.
    let consumer = spawnConsumer();
    await waitFor(
      'the consumer started',
      () => consumer.stdout.includes('started') || !consumer.running,
    );
    alive(consumer);

    // The relay starting and setting up its LISTEN: its sessions killed as they appear.
    let relay = spawnRelay();
    await waitFor(
      'relay sessions killed while it starts',
      async () => {
        await terminate('relay starting', [relayApp]);
        return (kills['relay starting'] ?? 0) >= 3 || !relay.running;
      },
      30_000,
      5,
    );
    alive(relay);
    // Looked up, then terminated by pid: a session seen listening may be gone by the terminate
    // (CI once saw it so: 0 terminated), and then the next one is taken.
    let first = 0;
    await waitFor('the relay listening, and that LISTEN session terminated', async () => {
      const [listener] = await sessions(relayApp, listening);
      if (!listener) return false;
      first = listener.pid;
      return (await terminate('LISTEN set up', [relayApp], `pid = ${listener.pid}`)) === 1;
    });
    await waitFor('LISTEN made again', async () => {
      const now = await sessions(relayApp, listening);
      return now.length > 0 && now[0]!.pid !== first;
    });
    alive(relay, consumer);

    // Idle: everything delivered, every session idle outside a transaction.
    await write(50);
    await allEffected(relay, consumer);
    await waitFor('relay and consumer sessions all idle', async () => {
      const busy = await sessions(relayApp, `state <> 'idle' OR xact_start IS NOT NULL`);
      const idleConsumer = await sessions(consumerApp, `state = 'idle'`);
      return busy.length === 0 && idleConsumer.length > 0;
    });
    assert.ok((await terminate('idle', [relayApp, consumerApp])) >= 2);

    // The relay mid-batch: rows claimed and published, their DELETE waiting on a lock we hold.
    await write(100, { delayMs: 1500 });
    const lock = await admin.connect();
    try {
      await lock.query('BEGIN');
      await lock.query(`LOCK TABLE "${schema}".outbox IN SHARE MODE`);
      await waitFor(
        'a relay batch in flight',
        async () =>
          (await sessions(relayApp, `xact_start IS NOT NULL AND wait_event_type = 'Lock'`)).length >
          0,
      );
      assert.ok((await terminate('relay mid-batch', [relayApp])) >= 1);
    } finally {
      await lock.query('ROLLBACK');
      lock.release();
    }
    alive(relay, consumer);

    // The consumer mid-batch: handlers inside their transactions, between statements.
    await write(20, { slowMs: 1000 });
    await waitFor(
      'a consumer transaction in flight',
      async () => (await sessions(consumerApp, `state = 'idle in transaction'`)).length > 0,
    );
    assert.ok((await terminate('consumer mid-batch', [consumerApp])) >= 1);
    await allEffected(relay, consumer);
    alive(relay, consumer);

    // Stopping: SIGTERM while both hold transactions, and their sessions killed as they stop.
    await write(50, { delayMs: 1000 });
    await write(20, { slowMs: 3000 });
    const stopLock = await admin.connect();
    let stopped: Array<{ code: number | null; signal: NodeJS.Signals | null }>;
    try {
      await stopLock.query('BEGIN');
      await stopLock.query(`LOCK TABLE "${schema}".outbox IN SHARE MODE`);
      await waitFor('both in a transaction', async () => {
        const r = await sessions(relayApp, `xact_start IS NOT NULL AND wait_event_type = 'Lock'`);
        const c = await sessions(consumerApp, `state = 'idle in transaction'`);
        return r.length > 0 && c.length > 0;
      });
      const stopping = [relay.stop(), consumer.stop()];
      await waitFor(
        'sessions killed while stopping',
        async () => {
          await terminate('stopping', [relayApp, consumerApp]);
          // The consumer's session is held by a 3 s handler, so it is always there to kill. The
          // relay may end its own sessions on SIGTERM before the first look reaches them.
          return (kills.stopping ?? 0) >= 1 && !relay.running && !consumer.running;
        },
        30_000,
        10,
      );
      stopped = await Promise.all(stopping);
    } finally {
      await stopLock.query('ROLLBACK');
      stopLock.release();
    }
    assert.deepEqual(stopped, [
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
    assert.doesNotMatch(relay.stderr + consumer.stderr, /Unhandled 'error' event/);

    // Afterwards: fresh processes drain what is left, and nothing was applied twice.
    consumer = spawnConsumer();
    await waitFor(
      'the consumer started again',
      () => consumer.stdout.includes('started') || !consumer.running,
    );
    relay = spawnRelay();
    await allEffected(relay, consumer);
    await waitFor('the outbox empty', async () => {
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${schema}".outbox`,
      );
      return rows[0]!.n === 0;
    });
    const effects = await effected();
    const twice = written.filter((id) => (effects.get(id) ?? 0) > 1);
    assert.deepEqual(twice, [], 'messages applied more than once');
    assert.equal(effects.size, written.length);
    assert.deepEqual(await Promise.all([relay.stop(), consumer.stop()]), [
      { code: 0, signal: null },
      { code: 0, signal: null },
    ]);
  });
});
