import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_RELAY_BACKOFF } from '../src/relay/relay-options.js';
import { AMQP_URL } from './support/env.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

describe('relay: rows in flight when the broker connection is lost', () => {
  const bed = relayTestBed('relay_lost_connection');

  it('go back untouched, no attempt counted, and drain at full speed after the reconnect', async () => {
    const { t, broker } = bed;
    const exchange = await broker.exchange('lost');
    const queue = await broker.queue('lost', exchange);
    const total = 20_000;
    await writeMessages(
      t,
      Array.from({ length: total }, (_, i) => ({
        exchange,
        routingKey: 'k',
        payload: { i },
        messageId: `l${i}`,
      })),
      2000,
    );
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      // The relay's defaults (1,000 rows a batch, 4 lanes, two batches each), its default retry
      // backoff too: thousands of rows are in flight at the cut.
      const relay = await bed.start({
        amqpUrl: proxy.url(AMQP_URL),
        retry: { backoff: DEFAULT_RELAY_BACKOFF },
      });
      await waitFor('a first part to be published', () => relay.stats().published >= 4000);
      proxy.resetAll();
      const cut = performance.now();
      await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
      const drainedSeconds = (performance.now() - cut) / 1000;
      const { released, retried, parked } = relay.stats();
      const messages = await broker.drain(queue);
      const distinct = new Set(messages.map((m) => m.properties.messageId)).size;
      assert.equal(distinct, total, 'a message was lost');
      assert.ok(relay.amqpConnects >= 2, `connects: ${relay.amqpConnects}`);
      assert.ok(released > 0, 'no row was in flight at the cut');
      // Not one of them became a counted attempt for the one-at-a-time retry lane.
      assert.equal(retried, 0, `${retried} rows retried`);
      assert.equal(parked, 0);
      console.log(
        `# connection cut with ${released} rows unconfirmed: released untouched; outbox drained ${drainedSeconds.toFixed(1)} s after the cut; ${messages.length - distinct} duplicates`,
      );
    } finally {
      await proxy.close();
    }
  });
});
