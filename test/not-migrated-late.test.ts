import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { migrate } from '../src/migrate/migrate.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/**
 * A schema never migrated, found only once Postgres answers: the start checks found Postgres
 * down and could not tell. The consumer took "relation does not exist" for its handler's
 * failure and dead-lettered every message after its attempts; the relay logged pg's bare error
 * for ever. Now the consumer retries in place without counting attempts, both say what to run,
 * and the messages go once the schema is migrated.
 */
describe('a schema not migrated, found after a start with Postgres down', () => {
  let f: ConsumerFixture;
  let postgres: TcpProxy;
  const pools: pg.Pool[] = [];
  /** A pool of its own through the proxy: an idle connection of another would pass the check. */
  const newPool = () => {
    const pool = new pg.Pool({ connectionString: postgres.url(DATABASE_URL), max: 6 });
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    pools.push(pool);
    return pool;
  };
  before(async () => {
    f = await ConsumerFixture.open('latemig');
    const { hostname, port } = new URL(DATABASE_URL);
    postgres = await TcpProxy.start(hostname, Number(port || 5432));
  });
  afterEach(() => f.stopHosts());
  after(async () => {
    for (const pool of pools) await pool.end();
    await postgres.close();
    await f.close();
  });

  it('consumer: retried in place, no attempt counted, handled once after the migration', async () => {
    const schema = uniqueName('latemig_c');
    const logger = recordingLogger();
    const name = f.name('late');
    const def = f.definition('late', f.recordEffect, {
      routingKeys: ['late'],
      retry: { maxAttempts: 2, backoff: { initialMs: 20, maxMs: 20 } },
    });
    postgres.refuse(true);
    const host = await f.host([def], {
      db: new Kysely({ dialect: new PostgresDialect({ pool: newPool() }) }),
      schema,
      logger,
    });
    postgres.refuse(false);
    try {
      await f.publish('late', { n: 1 }, { messageId: 'late-1' });
      await waitFor('retries in place', () => host.stats(name).databaseRetries >= 3);
      const stats = host.stats(name);
      assert.equal(stats.failures, 0, 'an attempt was counted');
      assert.equal(stats.deadLettered, 0);
      assert.ok(
        logger.lines.some(
          (l) => l.level === 'error' && l.text.includes(`outboxkit migrate --schema ${schema}`),
        ),
        'no error said what to run',
      );
      await migrate(f.t.pool, { schema });
      await waitFor('handled after the migration', () => host.stats(name).handled === 1);
      const effects = (await f.effects()).filter((e) => e.consumer === name);
      assert.deepEqual(
        effects.map((e) => [e.key, e.attempt]),
        [['late-1', 1]],
      );
    } finally {
      await f.t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('relay: its batch failures say what to run', async () => {
    const schema = uniqueName('latemig_r');
    const logger = recordingLogger();
    postgres.refuse(true);
    const relay = new OutboxRelay({
      pool: newPool(),
      amqpUrl: AMQP_URL,
      schema,
      logger,
      reconnectBackoff: { initialMs: 20, maxMs: 100 },
    });
    await relay.start();
    postgres.refuse(false);
    try {
      await waitFor('a batch failure that names the command', () =>
        logger.lines.some(
          (l) =>
            l.text.startsWith('relay batch failed') &&
            l.text.includes(`outboxkit migrate --schema ${schema}`),
        ),
      );
    } finally {
      await relay.stop();
    }
  });
});
