import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { AMQP_URL } from './support/env.js';
import { type GrantedRole, grantedRole } from './support/granted-role.js';
import { recordingLogger } from './support/recording-logger.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/**
 * Postgres refusing the relay more connections (53300: `max_connections`, or the role's
 * `CONNECTION LIMIT`, as here) while the relay holds some. A probe's relays, each lane backing
 * off 100 ms and starting afresh whenever another batch worked, logged ~10 warnings and ~10
 * "reaches the database again" a second, tried a new connection each time, and took the slots
 * the application's and the consumers' pools freed (they starved meanwhile).
 */
describe('a relay that Postgres refuses more connections than it holds', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let role: GrantedRole;

  before(async () => {
    t = await testDatabase('relcap');
    broker = await TestBroker.open();
    role = await grantedRole(t.pool, t.schema, 'relay_cap', 'CONNECTION LIMIT 3');
  });

  after(async () => {
    await broker.close();
    await role.drop();
    await t.close();
  });

  it('goes on with the connections it has, warns once, and tries for more less and less often', async () => {
    const exchange = await broker.exchange('cap');
    const queue = await broker.queue('cap', exchange);
    const logger = recordingLogger();
    const relay = new OutboxRelay({
      databaseUrl: role.url,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      batchSize: 50,
      pollIntervalMs: 200,
      reconnectBackoff: { initialMs: 20, maxMs: 1000 },
      logger,
    });
    const total = 3000;
    await relay.start();
    try {
      // Written in a steady flow, so that the lanes keep wanting connections for 4 s.
      for (let i = 0; i < total; i += 75) {
        await writeMessages(t, numberedMessages(exchange, total, 'c').slice(i, i + 75));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
      assert.equal(relay.databaseProblem, undefined, 'the relay works: no database problem');
    } finally {
      await relay.stop();
    }
    const ids = (await broker.drain(queue)).map((m) => m.properties.messageId);
    assert.equal(new Set(ids).size, total);

    const refusals = logger.lines.filter(
      (l) => l.level === 'warn' && l.text.includes('too many connections'),
    );
    assert.ok(refusals.length >= 1, 'no warning said Postgres refused a connection');
    const warned = logger.lines.filter((l) => l.level === 'warn');
    assert.ok(
      warned.length <= 3,
      `${warned.length} warnings:\n${warned.map((l) => l.text).join('\n')}`,
    );
    const again = logger.lines.filter((l) => l.text.includes('reaches the database again'));
    assert.equal(again.length, 0, 'it never lost the database');
    // Five lanes (four and the retry lane), each backing off to 1 s over about 5 s: at most
    // some twelve refusals a lane, not one per batch (before: over a hundred).
    assert.ok(relay.stats().errors <= 60, `${relay.stats().errors} refused connections`);
  });
});
