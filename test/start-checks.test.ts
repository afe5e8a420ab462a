import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { defineConsumer } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { type OutboxLogger, silentLogger } from '../src/util/logger.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/** What a start that refuses must reject with: one typed error, naming the fix, no password. */
function refusal(code: string, fix: RegExp) {
  return (error: unknown) => {
    const e = error as { name?: string; code?: string; message?: string };
    assert.equal(e.name, 'StartupError', String(error));
    assert.equal(e.code, code);
    assert.match(e.message ?? '', fix);
    assert.doesNotMatch(e.message ?? '', /wrong-secret/);
    return true;
  };
}

function relayOn(options: {
  schema: string;
  databaseUrl?: string;
  amqpUrl?: string;
  logger?: OutboxLogger;
}) {
  return new OutboxRelay({
    databaseUrl: options.databaseUrl ?? DATABASE_URL,
    amqpUrl: options.amqpUrl ?? AMQP_URL,
    schema: options.schema,
    reconnectBackoff: { initialMs: 20, maxMs: 200 },
    logger: options.logger ?? silentLogger,
  });
}

function withPassword(url: string, password: string): string {
  const u = new URL(url);
  u.password = password;
  return u.toString();
}

/** Starts and, whatever happens, stops; resolves with how long start took. */
async function timedStart(start: () => Promise<void>): Promise<number> {
  const began = Date.now();
  await start();
  return Date.now() - began;
}

describe('start checks of the relay', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('start');
  });
  after(() => t.close());

  it('refuses an unmigrated schema, naming the migrate command, at once', async () => {
    const schema = uniqueName('unmigrated');
    const relay = relayOn({ schema });
    const began = Date.now();
    await assert.rejects(
      relay.start(),
      refusal('schema-not-migrated', new RegExp(`outboxkit migrate --schema ${schema}`)),
    );
    assert.ok(Date.now() - began < 5_000);
    assert.equal(relay.isRunning, false);
    await relay.stop();
  });

  it('refuses a schema that lacks a migration this version needs', async () => {
    await t.pool.query(
      `DELETE FROM "${t.schema}".outboxkit_migrations WHERE version = (SELECT max(version) FROM "${t.schema}".outboxkit_migrations)`,
    );
    try {
      const relay = relayOn({ schema: t.schema });
      await assert.rejects(
        relay.start(),
        refusal('schema-outdated', new RegExp(`outboxkit migrate --schema ${t.schema}`)),
      );
    } finally {
      const { migrate } = await import('../src/migrate/migrate.js');
      // Put the version row back without running the migration again.
      const { loadMigrations } = await import('../src/migrate/migration-files.js');
      const last = (await loadMigrations()).at(-1)!;
      await t.pool.query(
        `INSERT INTO "${t.schema}".outboxkit_migrations (version, name) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
        [last.version, last.name],
      );
      assert.deepEqual((await migrate(t.pool, { schema: t.schema })).applied, []);
    }
  });

  it('refuses a schema made from the SQL files without a later migration, by its missing column', async () => {
    // Plain SQL leaves no version table, which the check took as current: the relay then failed
    // every claim on the missing column and stayed healthy (found by a probe).
    const schema = uniqueName('plainsql');
    const { loadMigrations } = await import('../src/migrate/migration-files.js');
    try {
      for (const m of (await loadMigrations(schema)).filter((m) => m.version <= 4)) {
        await t.pool.query(m.sql);
      }
      const relay = relayOn({ schema });
      await assert.rejects(
        relay.start(),
        refusal(
          'schema-outdated',
          /lacks migration 5 \(its outbox has no `rejections` column\).*psql -1/,
        ),
      );
      await relay.stop();
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('a column missing behind a schema recorded as current is told as schema-outdated, not retried quietly', async () => {
    // As after a start with Postgres down: the claims fail on the column (42703).
    const schema = uniqueName('nocolumn');
    const { migrate } = await import('../src/migrate/migrate.js');
    try {
      await migrate(t.pool, { schema });
      await t.pool.query(`ALTER TABLE "${schema}".outbox DROP COLUMN rejections`);
      const relay = relayOn({ schema });
      await relay.start();
      try {
        await waitFor('the problem found', () => relay.databaseProblem !== undefined);
        assert.equal(relay.databaseProblem?.kind, 'misconfigured');
        assert.equal((relay.databaseProblem?.error as { code?: string }).code, 'schema-outdated');
        assert.match(String(relay.databaseProblem?.error.message), /outboxkit migrate --schema/);
      } finally {
        await relay.stop();
      }
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('refuses a RabbitMQ password the broker rejects, with the password hidden', async () => {
    const warnings: string[] = [];
    const relay = relayOn({
      schema: t.schema,
      amqpUrl: withPassword(AMQP_URL, 'wrong-secret'),
      logger: { ...silentLogger, warn: (message) => warnings.push(message) },
    });
    await assert.rejects(relay.start(), refusal('broker-auth-refused', /403.*password/s));
    // Not "retrying" first: the start fails, for good.
    assert.deepEqual(warnings, []);
  });

  it('refuses a virtual host that does not exist', async () => {
    const url = new URL(AMQP_URL);
    url.pathname = `/${uniqueName('novhost')}`;
    const relay = relayOn({ schema: t.schema, amqpUrl: url.toString() });
    await assert.rejects(relay.start(), refusal('broker-vhost-refused', /virtual host/));
  });

  it('refuses a database that does not exist', async () => {
    const url = new URL(DATABASE_URL);
    url.pathname = `/${uniqueName('nodb')}`;
    const relay = relayOn({ schema: t.schema, databaseUrl: url.toString() });
    await assert.rejects(relay.start(), refusal('database-not-found', /database name/));
  });

  it('starts at once when RabbitMQ is merely down, and stops cleanly', async () => {
    const relay = relayOn({ schema: t.schema, amqpUrl: 'amqp://guest:guest@127.0.0.1:1' });
    const took = await timedStart(() => relay.start());
    assert.ok(took < 5_000, `start took ${took} ms`);
    assert.equal(relay.isRunning, true);
    assert.equal(relay.isConnected, false);
    await relay.stop();
  });

  it('starts when Postgres is merely down', async () => {
    const relay = relayOn({
      schema: t.schema,
      databaseUrl: 'postgres://postgres@127.0.0.1:1/test',
    });
    await relay.start();
    assert.equal(relay.isRunning, true);
    await relay.stop();
  });
});

describe('start checks of the consumer host', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('start_c');
  });
  after(() => t.close());

  const consumer = () =>
    defineConsumer({
      name: uniqueName('c'),
      queue: uniqueName('start_q'),
      exchange: uniqueName('start_x'),
      routingKeys: ['#'],
      handler: async () => {},
    });

  it('refuses an unmigrated schema before it declares anything', async () => {
    const schema = uniqueName('unmigrated');
    const host = new ConsumerHost({
      db: t.db,
      amqpUrl: AMQP_URL,
      schema,
      consumers: [consumer()],
      logger: silentLogger,
      retention: false,
    });
    await assert.rejects(
      host.start(),
      refusal('schema-not-migrated', /outboxkit migrate --schema/),
    );
  });

  it('refuses a RabbitMQ password at once rather than after startTimeoutMs', async () => {
    const host = new ConsumerHost({
      db: t.db,
      amqpUrl: withPassword(AMQP_URL, 'wrong-secret'),
      schema: t.schema,
      consumers: [consumer()],
      logger: silentLogger,
      retention: false,
      startTimeoutMs: 20_000,
    });
    const began = Date.now();
    await assert.rejects(host.start(), refusal('broker-auth-refused', /password/));
    assert.ok(Date.now() - began < 10_000);
  });
});
