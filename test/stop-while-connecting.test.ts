import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Kysely, PostgresDialect } from 'kysely';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { NodeChild } from './support/child-process.js';
import { deleteConsumerTopology } from './support/delete-consumer-topology.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { SilentServer } from './support/silent-server.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const CHILD = fileURLToPath(new URL('./support/stop-while-connecting-child.js', import.meta.url));

/**
 * From `stop()`'s return to the process's end. Before the connect could be aborted, its socket
 * held the process until amqplib's connect timeout (10 s from the attempt).
 */
const EXIT_BOUND_MS = 5000;

describe('a process stopped while RabbitMQ takes the connection and answers nothing', () => {
  let t: TestDatabase;
  let silent: SilentServer;
  before(async () => {
    t = await testDatabase('hungconn');
    silent = await SilentServer.start();
  });
  after(async () => {
    await silent.close();
    await t.close();
  });

  for (const kind of ['relay', 'consumer host']) {
    it(`ends soon after its ${kind} stops`, async () => {
      const { port } = silent;
      const child = new NodeChild(CHILD, [kind === 'relay' ? 'relay' : 'host'], {
        ...process.env,
        OKT_SCHEMA: t.schema,
        AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`,
        DATABASE_URL,
      });
      await waitFor(
        'the stop to return',
        () => child.stdout.includes('stopped') || !child.running,
        20_000,
      );
      const stopped = performance.now();
      const outcome = await child.exited(20_000);
      const lingered = performance.now() - stopped;
      assert.equal(outcome.code, 0, child.stderr);
      assert.ok(
        lingered < EXIT_BOUND_MS,
        `the process lived ${Math.round(lingered)} ms after the stop`,
      );
    });
  }

  it('a connection that was made is closed politely at a stop: no connection error logged', async () => {
    const logger = recordingLogger();
    const relay = new OutboxRelay({ pool: t.pool, amqpUrl: AMQP_URL, schema: t.schema, logger });
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: t.pool }) });
    const consumer = { name: `${t.schema}.polite`, exchange: `${t.schema}.polite` };
    const host = new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      consumers: [{ ...consumer, handler: async () => {} }],
      retention: false,
      logger,
    });
    try {
      await relay.start();
      await host.start();
      await waitFor('the relay to connect', () => relay.isConnected);
    } finally {
      await host.stop();
      await relay.stop();
      await deleteConsumerTopology([consumer]);
    }
    const warnings = logger.lines.filter((l) => l.level === 'warn' || l.level === 'error');
    assert.deepEqual(warnings, []);
  });

  it('a relay and a host never started stop without a word, and cannot start after', async () => {
    // An application whose boot failed before it came to them stops them: "relay stopped" was
    // logged for a relay that never ran.
    const logger = recordingLogger();
    const relay = new OutboxRelay({ databaseUrl: DATABASE_URL, amqpUrl: AMQP_URL, logger });
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: t.pool }) });
    const host = new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      consumers: [{ name: `${t.schema}.unstarted`, exchange: 'x', handler: async () => {} }],
      logger,
    });
    await Promise.all([relay.stop(), host.stop()]);
    assert.deepEqual(logger.lines, []);
    await assert.rejects(relay.start(), { name: 'StateError' });
    await assert.rejects(host.start(), { name: 'StateError' });
  });

  it('a relay stopped before its start returned says so, not that the caller closed its pool', async () => {
    // The stop closed the relay's own pool under the start checks, which then blamed the
    // caller: "Close the pool ... after stopping what uses it" (found by a probe).
    const relay = new OutboxRelay({
      databaseUrl: DATABASE_URL,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      logger: recordingLogger(),
    });
    // Watched before the stop: the start may fail while the stop is still closing things.
    const starting = assert.rejects(relay.start(), {
      name: 'StateError',
      message: /stopped while it was starting/,
    });
    await relay.stop();
    await starting;
  });

  it("the relay's LISTEN connection, on a pool of its own, is ended politely at a stop", async () => {
    // Its own pool logs what fails on it (the test pool swallows it): each stop logged "idle
    // Postgres connection failed: This operation was aborted" when the LISTEN socket was destroyed.
    const logger = recordingLogger();
    for (let i = 0; i < 3; i += 1) {
      const relay = new OutboxRelay({
        databaseUrl: DATABASE_URL,
        amqpUrl: AMQP_URL,
        schema: t.schema,
        logger,
      });
      await relay.start();
      await waitFor('the relay to listen', () => relay.listenConnects === 1);
      await relay.stop();
    }
    // The socket's error, when there was one, came a few ticks after the stop.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const warnings = logger.lines.filter((l) => l.level === 'warn' || l.level === 'error');
    assert.deepEqual(warnings, []);
  });
});
