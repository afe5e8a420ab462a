// Settings with which every connect fails, or a guarantee quietly goes, found by a new user's
// probe: the relay and the consumers took them and retried for as long as the process ran, or
// ignored them. Each is refused where it is given, naming it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { amqpUrlList } from '../src/amqp/amqp-urls.js';
import { connectAmqp } from '../src/amqp/connect-amqp.js';
import { defineConsumer } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { resizePartitions } from '../src/consumer/resize-partitions.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { StartupError } from '../src/errors/startup-error.js';
import { migrate } from '../src/migrate/migrate.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { js, refused } from './support/refused.js';
import { testRelay } from './support/relay-fixture.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

const relayOptions = (options: object) =>
  resolveRelayOptions(js({ databaseUrl: 'postgres://x/y', amqpUrl: 'amqp://h', ...options }));
const host = (options: object) =>
  new ConsumerHost(
    js({ db: { transaction() {} }, amqpUrl: 'amqp://h', consumers: [], ...options }),
  );

describe('settings that would fail every connect, or be ignored, are refused', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('never_connect');
  });
  after(() => t.close());

  it("an AMQP URL's connection settings that amqplib would send the broker as they are", () => {
    for (const [query, detail] of [
      ['frameMax=abc', /frameMax must be a whole number from 4096/],
      ['frameMax=100', /frameMax must be a whole number from 4096/],
      ['channelMax=70000', /channelMax must be a whole number from 0 to 65535/],
      ['heartbeat=-1', /heartbeat must be a whole number from 1 to 65535/],
      ['heartbeat=0', /heartbeat=0 turns heartbeats off/],
    ] as const) {
      const url = `amqp://guest:secret@h:5672/?${query}`;
      for (const make of [
        () => amqpUrlList(url),
        () => amqpUrlList(['amqp://a', url]),
        () => relayOptions({ amqpUrl: url }),
        () => host({ amqpUrl: url }),
      ]) {
        assert.throws(make, refused('amqpUrl', detail));
        assert.throws(make, (e: Error) => !/secret/.test(e.message));
      }
    }
    // What the broker takes: frameMax=0 is "no limit", as in amqplib.
    amqpUrlList('amqp://h/?frameMax=0&channelMax=0&heartbeat=5&locale=en_US');
    amqpUrlList('amqp://h/?frameMax=131072');
  });

  it("a URL's heartbeat counts for the publish time-out, and may not contradict heartbeatSeconds", () => {
    // amqplib uses the URL's: a 600 s heartbeat with a 30 s publish time-out would give up on
    // confirms the broker may still send. Left out, the time-out follows the heartbeat.
    assert.equal(relayOptions({ amqpUrl: 'amqp://h/?heartbeat=600' }).publishTimeoutMs, 1_200_000);
    assert.equal(relayOptions({}).publishTimeoutMs, 30_000);
    assert.throws(
      () => relayOptions({ amqpUrl: 'amqp://h/?heartbeat=600', publishTimeoutMs: 30_000 }),
      refused(
        'publishTimeoutMs',
        /at least twice the heartbeat \(1200000 ms, for a heartbeat of 600 s\)/,
      ),
    );
    assert.equal(relayOptions({ amqpUrl: 'amqp://h/?heartbeat=4' }).heartbeatSeconds, 4);
    assert.equal(
      relayOptions({ amqpUrl: 'amqp://h/?heartbeat=010', heartbeatSeconds: 10 }).heartbeatSeconds,
      10,
    );
    // A node without the parameter uses the option: the list agrees.
    const list = ['amqp://a/?heartbeat=4', 'amqp://b'];
    assert.equal(relayOptions({ amqpUrl: list, heartbeatSeconds: 4 }).heartbeatSeconds, 4);
    assert.equal(relayOptions({ amqpUrl: list }).heartbeatSeconds, 10, 'the longest of 4 and 10');
    for (const make of [
      () => relayOptions({ amqpUrl: 'amqp://h/?heartbeat=4', heartbeatSeconds: 8 }),
      () => host({ amqpUrl: 'amqp://h/?heartbeat=4', heartbeatSeconds: 8 }),
      () => relayOptions({ amqpUrl: ['amqp://a/?heartbeat=4', 'amqp://b'], heartbeatSeconds: 8 }),
    ]) {
      assert.throws(make, refused('heartbeatSeconds', /heartbeat=4, which amqplib would use/));
    }
  });

  it('a port out of range is named as such, not as "not a URL"', () => {
    assert.throws(
      () => amqpUrlList('amqp://guest:secret@localhost:99999'),
      refused('amqpUrl', /port 99999 is above 65535/),
    );
    assert.throws(() => amqpUrlList('amqp://h:port'), refused('amqpUrl', /not a URL/));
  });

  it('a connection name the broker cannot read in its first frame; one at the limit connects', async () => {
    for (const make of [
      () => relayOptions({ connectionName: 'n'.repeat(1025) }),
      () => host({ connectionName: 'é'.repeat(600) }),
    ]) {
      assert.throws(make, refused('connectionName', /at most 1024 bytes/));
    }
    const model = await connectAmqp(AMQP_URL, { connectionName: 'n'.repeat(1024) });
    await model.close();
  });

  it('a pg Pool already ended is refused when given, and fails the start if ended after', async () => {
    const ended = new pg.Pool({ connectionString: DATABASE_URL });
    await ended.end();
    assert.throws(
      () => new OutboxRelay({ pool: ended, amqpUrl: AMQP_URL }),
      refused('pool', /has been ended/),
    );
    await assert.rejects(migrate(ended), refused('pool', /has been ended/));

    const pool = new pg.Pool({ connectionString: DATABASE_URL });
    const relay = testRelay(t, { pool });
    await pool.end();
    await assert.rejects(relay.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-closed');
      assert.match(error.message, /Cannot use a pool after calling end/);
      return true;
    });
    assert.equal(relay.isRunning, false);
  });

  it('a consumer host on a Kysely instance destroyed before start fails its start, naming it', async () => {
    const db = new Kysely<unknown>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: DATABASE_URL }) }),
    });
    // Kysely makes its driver at the first statement, and destroys nothing before it.
    await sql`SELECT 1`.execute(db);
    await db.destroy();
    const destroyed = new ConsumerHost({
      db,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      consumers: [defineConsumer({ name: 'closed.c', exchange: 'closed', async handler() {} })],
    });
    try {
      await assert.rejects(destroyed.start(), (error: unknown) => {
        assert.ok(error instanceof StartupError, String(error));
        assert.equal(error.code, 'database-closed');
        assert.match(error.message, /driver has already been destroyed/);
        return true;
      });
    } finally {
      await destroyed.stop();
    }
  });

  it('resizePartitions refuses an option it does not take before declaring anything', async () => {
    const consumer = defineConsumer({
      name: 'resize.c',
      exchange: 'resize',
      ordered: true,
      partitions: 3,
      async handler() {},
    });
    // The broker's port is closed: a refusal must come before any connect.
    await assert.rejects(
      resizePartitions(js({ db: t.db, amqpUrl: 'amqp://127.0.0.1:1', consumer, from: 2, frm: 2 })),
      refused('frm', /not an option of resizePartitions; did you mean `from`/),
    );
  });

  it("a fanout consumer's binding keys, which RabbitMQ would ignore", () => {
    const consumer = (fields: object) =>
      resolveConsumer(js({ name: 'c', exchange: 'e', handler: async () => {}, ...fields }), {
        brokerConsumerTimeoutMs: 30 * 60_000,
      });
    assert.throws(
      () => consumer({ exchangeType: 'fanout', routingKeys: ['order.placed'] }),
      refused('consumers[c].routingKeys', /fanout exchange ignores binding keys/),
    );
    assert.deepEqual(consumer({ exchangeType: 'fanout' }).routingKeys, ['']);
    assert.deepEqual(consumer({ exchangeType: 'fanout', routingKeys: [''] }).routingKeys, ['']);
  });
});
