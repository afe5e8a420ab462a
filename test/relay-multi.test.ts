import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { DEFAULT_RELAY_BACKOFF } from '../src/relay/relay-options.js';
import { AMQP_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { numberedMessages, testRelay, writeMessages } from './support/relay-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { payloadOf, TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/** Counts how often each message id arrived. */
function tally(ids: readonly (string | undefined)[]): { distinct: number; duplicates: number } {
  const counts = new Map<string | undefined, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  let duplicates = 0;
  for (const n of counts.values()) duplicates += n - 1;
  return { distinct: counts.size, duplicates };
}

describe('several relays, and a lost broker connection', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let relays: OutboxRelay[] = [];
  before(async () => {
    t = await testDatabase('multi');
    broker = await TestBroker.open();
  });
  afterEach(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    relays = [];
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('two relays on one outbox of 10k rows: all arrive, none twice', async () => {
    const exchange = await broker.exchange('two');
    const queue = await broker.queue('two', exchange);
    const total = 10_000;
    await writeMessages(t, numberedMessages(exchange, total, 'm'), 1000);
    relays = [testRelay(t, { batchSize: 250 }), testRelay(t, { batchSize: 250 })];
    await Promise.all(relays.map((r) => r.start()));
    await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
    const messages = await broker.drain(queue);
    const { distinct, duplicates } = tally(messages.map((m) => m.properties.messageId));
    assert.equal(distinct, total);
    assert.equal(duplicates, 0);
    // Both relays did part of the work; otherwise this proved nothing about sharing.
    assert.ok(
      relays.every((r) => r.stats().published > 0),
      `split: ${relays.map((r) => r.stats().published)}`,
    );
    assert.equal(relays[0]!.stats().published + relays[1]!.stats().published, total);
  });

  it('keeps per-key order with two relays and interleaved keys', async () => {
    const exchange = await broker.exchange('order');
    const queue = await broker.queue('order', exchange);
    const keys = 20;
    const perKey = 40;
    // Many small transactions whose keys interleave, plus unkeyed traffic around them.
    const messages = [];
    for (let seq = 0; seq < perKey; seq += 1) {
      for (let k = 0; k < keys; k += 1) {
        messages.push({ exchange, routingKey: 'k', payload: { k, seq }, orderingKey: `key-${k}` });
      }
      messages.push({ exchange, routingKey: 'k', payload: { k: -1, seq } });
    }
    // Both relays run while the writes commit, so notifications wake both of them.
    relays = [testRelay(t, { batchSize: 50 }), testRelay(t, { batchSize: 50 })];
    await Promise.all(relays.map((r) => r.start()));
    await waitFor('both relays to listen', () =>
      relays.every((r) => r.listenConnects === 1 && r.isConnected),
    );
    await writeMessages(t, messages, 7);
    await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
    const received = (await broker.drain(queue)).map(
      (m) => payloadOf(m) as { k: number; seq: number },
    );
    assert.equal(received.length, messages.length);
    const last = new Map<number, number>();
    let violations = 0;
    for (const { k, seq } of received) {
      if (k < 0) continue;
      if ((last.get(k) ?? -1) >= seq) violations += 1;
      last.set(k, seq);
    }
    assert.equal(violations, 0);
    assert.ok(
      relays.every((r) => r.stats().published > 0),
      `split: ${relays.map((r) => r.stats().published)}`,
    );
  });

  it('publishes every message at least once when the broker connection is cut mid-stream; rows in flight go back untouched', async () => {
    const exchange = await broker.exchange('cut');
    const queue = await broker.queue('cut', exchange);
    const total = 20_000;
    await writeMessages(t, numberedMessages(exchange, total, 'c'), 2000);
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      // The relay's defaults (1,000 rows a batch, 4 lanes, two batches each, a publish timeout of
      // 30 s and a heartbeat of 10 s) and its default retry backoff: thousands of rows are in
      // flight at the cut. The tests' short timeout (5 s) could count the first batches after the
      // reconnect as failed on a loaded machine, which is not what this test is about.
      const logger = recordingLogger();
      const relay = testRelay(t, {
        amqpUrl: proxy.url(AMQP_URL),
        publishTimeoutMs: 30_000,
        heartbeatSeconds: 10,
        retry: { backoff: DEFAULT_RELAY_BACKOFF },
        logger,
      });
      relays = [relay];
      await relay.start();
      await waitFor('a first part to be published', () => relay.stats().published >= 4000);
      proxy.resetAll();
      const cut = performance.now();
      await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
      const drainedSeconds = (performance.now() - cut) / 1000;
      const messages = await broker.drain(queue);
      const { distinct, duplicates } = tally(messages.map((m) => m.properties.messageId));
      assert.equal(distinct, total, 'a message was lost');
      // The fault happened: the relay reconnected, and the rows in flight at the cut went back
      // untouched, not one of them a counted attempt for the one-at-a-time retry lane.
      const { released, retried, parked } = relay.stats();
      assert.ok(relay.amqpConnects >= 2, `connects: ${relay.amqpConnects}`);
      assert.ok(released > 0, 'no row was in flight at the cut');
      const warnings = logger.lines.filter((l) => l.level !== 'debug' && l.level !== 'info');
      assert.equal(retried, 0, `${retried} rows retried; ${JSON.stringify(warnings)}`);
      assert.equal(parked, 0);
      console.log(
        `# connection cut with ${released} rows unconfirmed: released untouched; outbox drained ${drainedSeconds.toFixed(1)} s after the cut; ${duplicates} duplicates`,
      );
    } finally {
      await proxy.close();
    }
  });

  it('keeps rows whose confirms never come while the broker link hangs, and delivers them after', async () => {
    const exchange = await broker.exchange('hang');
    const queue = await broker.queue('hang', exchange);
    const total = 3000;
    await writeMessages(t, numberedMessages(exchange, total, 'h'), 1000);
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      const relay = testRelay(t, { amqpUrl: proxy.url(AMQP_URL), batchSize: 100, concurrency: 2 });
      relays = [relay];
      await relay.start();
      await waitFor('a first part to be published', () => relay.stats().published >= 200);
      proxy.pause();
      const publishedAtHang = relay.stats().published;
      // The heartbeat or the publish timeout gives up on the hung link; the rows stay.
      await waitFor('the in-flight rows to be given back', () => relay.stats().retried > 0, 30_000);
      assert.ok((await t.count()) > 0);
      proxy.resume();
      await waitFor('the outbox to drain', async () => (await t.count()) === 0, 60_000);
      const messages = await broker.drain(queue);
      assert.equal(
        new Set(messages.map((m) => m.properties.messageId)).size,
        total,
        'a message was lost',
      );
      assert.ok(relay.stats().published > publishedAtHang);
    } finally {
      await proxy.close();
    }
  });
});
