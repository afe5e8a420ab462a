import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const STOP_TIMEOUT_MS = 1000;
/**
 * `stopTimeoutMs`, then at most 2 s for the lanes' last statements and 2 s for the connection's
 * close, with room for a loaded machine. Before: 8 s with the broker hung (each close waited out
 * its bound in turn), and 143 s with Postgres hung (two statements at the pool's query_timeout).
 */
const BOUND_MS = STOP_TIMEOUT_MS + 4000 + 1500;

describe('a relay stopped while RabbitMQ or Postgres hangs returns within its bound', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('stophung');
    broker = await TestBroker.open();
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  for (const hung of ['RabbitMQ', 'Postgres', 'both']) {
    it(`${hung} hung mid-stream: stop() within stopTimeoutMs + 4 s, nothing lost`, async () => {
      const exchange = await broker.exchange(`hung-${hung}`);
      const queue = await broker.queue(`hung-${hung}`, exchange);
      const total = 6000;
      await writeMessages(t, numberedMessages(exchange, total, 'h'), 2000);
      const amqpProxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
      const pgProxy = await TcpProxy.start('127.0.0.1', Number(new URL(DATABASE_URL).port || 5432));
      try {
        const relay = new OutboxRelay({
          databaseUrl: pgProxy.url(DATABASE_URL),
          amqpUrl: amqpProxy.url(AMQP_URL),
          schema: t.schema,
          stopTimeoutMs: STOP_TIMEOUT_MS,
          logger: silentLogger,
        });
        await relay.start();
        await waitFor('a first part to be published', () => relay.stats().published >= 500);
        if (hung !== 'Postgres') amqpProxy.pause();
        if (hung !== 'RabbitMQ') pgProxy.pause();
        const started = performance.now();
        await relay.stop();
        const took = performance.now() - started;
        assert.ok(took < BOUND_MS, `stop() took ${Math.round(took)} ms`);
        amqpProxy.resume();
        pgProxy.resume();
        // What the stopped relay left is published by the next one: none lost.
        const next = new OutboxRelay({
          pool: t.pool,
          amqpUrl: AMQP_URL,
          schema: t.schema,
          logger: silentLogger,
        });
        await next.start();
        try {
          // The hung sessions hold their rows until Postgres ends them (the stopped relay's
          // idle_in_transaction_session_timeout), so this can take a while.
          await waitFor('the outbox to drain', async () => (await t.count()) === 0, 120_000);
        } finally {
          await next.stop();
        }
        const ids = new Set((await broker.drain(queue)).map((m) => m.properties.messageId));
        assert.equal(ids.size, total, 'a message was lost');
      } finally {
        await amqpProxy.close();
        await pgProxy.close();
      }
    });
  }
});

describe('a relay stopped while RabbitMQ hangs on the opening of its channels', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('stopopen');
  });
  after(() => t.close());

  it('stop() within stopTimeoutMs + 4 s, not when the heartbeat gives up', async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      const relay = new OutboxRelay({
        pool: t.pool,
        amqpUrl: proxy.url(AMQP_URL),
        schema: t.schema,
        stopTimeoutMs: STOP_TIMEOUT_MS,
        // The heartbeat would end the wait for the channels only after twice this.
        heartbeatSeconds: 30,
        logger: silentLogger,
      });
      await relay.start();
      // The lanes asked for their channels as the start ended; the broker's answers are held.
      proxy.pause();
      const started = performance.now();
      await relay.stop();
      const took = performance.now() - started;
      assert.ok(took < BOUND_MS, `stop() took ${Math.round(took)} ms`);
    } finally {
      await proxy.close();
    }
  });
});

describe('a consumer host stopped while RabbitMQ hangs returns within its bound', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('hoststophung');
  });
  after(() => f.close());

  it('stop() within stopTimeoutMs + 4 s; what was not acked comes back', async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      const name = f.name('hung');
      const host = await f.host(
        [f.definition('hung', f.recordEffect, { routingKeys: ['hung'], concurrency: 4 })],
        { amqpUrl: proxy.url(AMQP_URL), stopTimeoutMs: STOP_TIMEOUT_MS },
      );
      const total = 2000;
      await f.publishMany(
        Array.from({ length: total }, (_, i) => ({
          routingKey: 'hung',
          content: { i },
          options: { messageId: `h${i}` },
        })),
      );
      await waitFor('some handled', () => host.stats(name).handled >= 100);
      proxy.pause();
      const started = performance.now();
      await host.stop();
      const took = performance.now() - started;
      // Before: 9 s with stopTimeoutMs 2000 (a 5 s cancel, then each close in turn).
      assert.ok(took < BOUND_MS, `stop() took ${Math.round(took)} ms`);
      proxy.resume();
      const next = await f.host([
        f.definition('hung', f.recordEffect, { routingKeys: ['hung'], concurrency: 4 }),
      ]);
      await waitFor(
        'every message handled once',
        async () => new Set((await f.effects()).map((e) => e.key)).size === total,
        60_000,
      );
      assert.equal((await f.effects()).filter((e) => e.consumer === name).length, total);
      await next.stop();
    } finally {
      await proxy.close();
    }
  });
});
