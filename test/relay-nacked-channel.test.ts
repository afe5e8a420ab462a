import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { NACKS_BEFORE_NEW_CHANNEL } from '../src/amqp/confirmed-publisher.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import type { OutboxLogger } from '../src/util/logger.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { payloadOf, TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const NEW_CHANNEL = 'confirm channel nacks every publish; opening a new one';

/** Counts the relay's log messages. */
class CountingLogger implements OutboxLogger {
  readonly #counts = new Map<string, number>();
  count(message: string): number {
    return this.#counts.get(message) ?? 0;
  }
  #log = (message: string) => {
    this.#counts.set(message, this.count(message) + 1);
  };
  debug = this.#log;
  info = this.#log;
  warn = this.#log;
  error = this.#log;
}

// A channel that answers nothing but nacks may be stuck on a quorum queue's old leader (seen on
// a cluster, test/faults/cluster.test.ts): the relay replaces it. A full queue's reject-publish
// forces the nacks here; the relay cannot tell them apart, and needs not.
describe('OutboxRelay: a channel that keeps nacking', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let relays: OutboxRelay[] = [];
  before(async () => {
    t = await testDatabase('relay_nacked');
    broker = await TestBroker.open();
  });
  afterEach(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
    await t.pool.query(`TRUNCATE "${t.schema}".outbox, "${t.schema}".outbox_parked`);
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  /** A relay with `retryMs` between a row's attempts; one row nacked until `heal` runs. */
  async function nackedRow(name: string, retryMs: number) {
    const exchange = await broker.exchange(name, 'direct');
    const full = await broker.queue(`${name}-full`, exchange, 'k', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    await writeMessages(t, [{ exchange, routingKey: 'k', payload: 'only' }]);
    const logger = new CountingLogger();
    const relay = testRelay(t, {
      logger,
      concurrency: 1,
      retry: { backoff: { initialMs: retryMs, maxMs: retryMs, jitter: 0 } },
    });
    relays.push(relay);
    await relay.start();
    const attempts = async () => {
      const { rows } = await t.pool.query<{ attempts: number }>(
        `SELECT attempts FROM "${t.schema}".outbox`,
      );
      return rows[0]?.attempts ?? 0;
    };
    const heal = async () => {
      const queue = await broker.queue(name, exchange, 'k');
      await broker.channel.deleteQueue(full);
      await waitFor('the row published', async () => (await t.count()) === 0, 20_000);
      assert.deepEqual((await broker.drain(queue)).map(payloadOf), ['only']);
    };
    return { relay, logger, attempts, heal };
  }

  it(`publishes on a new channel after ${NACKS_BEFORE_NEW_CHANNEL} nacks in a row`, async () => {
    const { relay, logger, attempts, heal } = await nackedRow('nack-churn', 10);
    await waitFor('a new channel after nacks', () => logger.count(NEW_CHANNEL) >= 2, 20_000);
    assert.ok((await attempts()) >= 2 * NACKS_BEFORE_NEW_CHANNEL, 'replaced before enough nacks');
    await heal();
    assert.equal(relay.stats().parked, 0);
  });

  it('keeps its channel through fewer nacks in a row', async () => {
    // The first attempt goes on the fresh lane's channel, the next ones on the retry lane's.
    const { logger, attempts, heal } = await nackedRow('nack-few', 300);
    await waitFor('the row nacked 4 times', async () => (await attempts()) >= 4, 20_000);
    await heal();
    assert.ok((await attempts()) < NACKS_BEFORE_NEW_CHANNEL);
    assert.equal(logger.count(NEW_CHANNEL), 0, 'a channel replaced after a few nacks');
  });
});
