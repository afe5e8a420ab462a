import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { migrate } from '../src/migrate/migrate.js';
import { OutboxListener } from '../src/relay/outbox-listener.js';
import { ADVISORY_LOCK_CLASS } from '../src/sql/advisory-locks.js';
import { silentLogger } from '../src/util/logger.js';
import { CLI_MAIN, NodeChild } from './support/child-process.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { FatalPostgresServer } from './support/fatal-postgres-server.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

// Every pg client outboxkit holds must have an 'error' listener for its whole life: pg emits
// 'error' on a client whose session dies, and an emitter nobody listens to throws, which ends
// the process. These tests make a client die at the moments pg-pool leaves it unheard.

/** Uncaught exceptions of this process while a test runs (the runner would only report them). */
const uncaught: unknown[] = [];
const onUncaught = (error: unknown) => uncaught.push(error);

describe('pg clients that die while nobody listens', () => {
  let fatal: FatalPostgresServer;
  const children: NodeChild[] = [];
  before(async () => {
    fatal = await FatalPostgresServer.start();
  });
  after(async () => {
    for (const c of children) c.kill();
    await fatal.close();
  });
  beforeEach(() => {
    uncaught.length = 0;
    process.on('uncaughtException', onUncaught);
  });
  afterEach(() => {
    process.off('uncaughtException', onUncaught);
  });

  it('a relay process outlives sessions terminated as the pool hands them over', async () => {
    const start = fatal.connections;
    const relay = new NodeChild(CLI_MAIN, ['relay', '--log-level', 'warn'], {
      ...process.env,
      DATABASE_URL: fatal.url('outboxkit-relay-test'),
      AMQP_URL,
    });
    children.push(relay);
    // The LISTEN connection and every lane connect, fail, back off and connect again.
    await waitFor(
      'ten connections of the relay, or its death',
      () => fatal.connections - start >= 10 || !relay.running,
      30_000,
    );
    assert.equal(relay.running, true, `the relay died: ${relay.stderr}`);
    assert.doesNotMatch(relay.stderr, /Unhandled 'error' event/);
    const outcome = await relay.stop();
    assert.deepEqual(outcome, { code: 0, signal: null }, relay.stderr);
  });

  for (const command of ['migrate', 'status']) {
    it(`\`outboxkit ${command}\` reports such a session as a failure, not a crash`, async () => {
      const cli = new NodeChild(CLI_MAIN, [command], {
        ...process.env,
        DATABASE_URL: fatal.url('outboxkit-cli-test'),
      });
      children.push(cli);
      const outcome = await cli.exited();
      assert.equal(outcome.code, 1);
      assert.doesNotMatch(cli.stderr, /Unhandled 'error' event/);
      assert.match(cli.stderr, new RegExp(`^outboxkit ${command}: Postgres at `, 'm'));
    });
  }

  it('the LISTEN connection on an application pool whose clients have no listener', async () => {
    // The application's pool listens for idle clients' errors, as pg asks; not for the rest.
    const pool = new pg.Pool({ connectionString: fatal.url(), connectionTimeoutMillis: 5000 });
    pool.on('error', () => {});
    const listener = new OutboxListener(
      pool,
      { listenSql: 'LISTEN nothing', name: 'nothing' },
      () => {},
      silentLogger,
      { backoff: { initialMs: 5, maxMs: 20 }, pollIntervalMs: 1000 },
    );
    const start = fatal.connections;
    listener.start();
    try {
      await waitFor('five LISTEN attempts', () => fatal.connections - start >= 5, 10_000);
    } finally {
      await listener.stop();
      await pool.end();
    }
    assert.deepEqual(uncaught, []);
  });
});

describe('migrate() on an application pool whose clients have no listener', () => {
  let admin: pg.Pool;
  before(() => {
    admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    admin.on('error', () => {});
  });
  after(async () => {
    await admin.end();
  });
  beforeEach(() => {
    uncaught.length = 0;
    process.on('uncaughtException', onUncaught);
  });
  afterEach(() => {
    process.off('uncaughtException', onUncaught);
  });

  it('fails, and does not crash, when its session is terminated mid-migration', async () => {
    const schema = uniqueName('mig');
    const applicationName = uniqueName('okt_migrate');
    const url = new URL(DATABASE_URL);
    url.searchParams.set('application_name', applicationName);
    const pool = new pg.Pool({ connectionString: url.toString(), max: 1 });
    pool.on('error', () => {});
    // Hold the migration lock, so the migration waits inside its transaction.
    const holder = await admin.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [
        ADVISORY_LOCK_CLASS,
        `migrate:${schema}`,
      ]);
      const migrating = migrate(pool, { schema });
      migrating.catch(() => {});
      await waitFor('the migration waiting for its lock', async () => {
        const { rows } = await admin.query(
          `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`,
          [applicationName],
        );
        return rows.length > 0;
      });
      // Only this test's session, found by its unique application name.
      const { rows } = await admin.query<{ n: number }>(
        `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
         WHERE application_name = $1`,
        [applicationName],
      );
      assert.equal(rows[0]!.n, 1);
      await assert.rejects(migrating, { code: '57P01' });
      // The connection's end comes after the failed statement: give it the turn it needs.
      await waitFor('the pool to drop the dead client', () => pool.totalCount === 0, 5000);
      assert.deepEqual(uncaught, []);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      holder.release();
      await pool.end();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
