import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import * as amqp from 'amqplib';
import { ConfirmPublisher } from '../src/relay/confirm-publisher.js';
import type { OutboxRow } from '../src/relay/outbox-row.js';
import { emptyRelayStats } from '../src/relay/relay-stats.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';

function rows(exchange: string, routingKey: string, count: number, tag: string): OutboxRow[] {
  return Array.from({ length: count }, (_, i) => ({
    id: String(i + 1),
    message_id: `${tag}-${i}`,
    exchange,
    routing_key: routingKey,
    payload: Buffer.from(JSON.stringify({ i })),
    content_type: 'application/json',
    headers: null,
    ordering_key: null,
    correlation_id: null,
    causation_id: null,
    created_at_s: Math.floor(Date.now() / 1000),
    attempts: 0,
  }));
}

describe('ConfirmPublisher on a real broker', () => {
  let broker: TestBroker;
  let exchange: string;
  let queue: string;
  let connection: ChannelModel;
  let channel: ConfirmChannel;

  before(async () => {
    broker = await TestBroker.open();
    exchange = await broker.exchange('x', 'direct');
    queue = await broker.queue('q', exchange, 'bound');
  });
  after(async () => {
    await connection?.close().catch(() => {});
    await broker.close();
  });

  async function openChannel(): Promise<ConfirmChannel> {
    connection = await amqp.connect(AMQP_URL);
    connection.on('error', () => {});
    channel = await connection.createConfirmChannel();
    channel.on('error', () => {});
    return channel;
  }

  it('acks routed messages, parks returned ones, and times every broker answer', async () => {
    const stats = emptyRelayStats();
    const publisher = new ConfirmPublisher(await openChannel(), stats);
    const routed = rows(exchange, 'bound', 20, 'routed');
    const unroutable = rows(exchange, 'nowhere', 5, 'unroutable');
    const outcomes = await publisher.publishBatch(
      [...routed, ...unroutable].map((row) => ({ row })),
      10_000,
    );
    assert.deepEqual(
      outcomes.slice(0, 20).map((o) => o.kind),
      Array(20).fill('acked'),
    );
    for (const o of outcomes.slice(20)) {
      assert.equal(o.kind, 'permanent');
      assert.match((o as { reason: string }).reason, /^unroutable: 312 NO_ROUTE/);
    }
    assert.equal(stats.publishSeconds.count, 25);
    assert.equal(await broker.waitForDepth(queue, 20), 20);
    await publisher.close();
    await connection.close();
  });

  it('a connection lost before the confirms: every row transient, none timed', async () => {
    const stats = emptyRelayStats();
    const publisher = new ConfirmPublisher(await openChannel(), stats);
    const pending = publisher.publishBatch(
      rows(exchange, 'bound', 50, 'cut').map((row) => ({ row })),
      10_000,
    );
    // The publishes are written; no confirm can have been read yet: cut the socket now.
    (connection.connection as unknown as { stream: { destroy(e: Error): void } }).stream.destroy(
      new Error('cut by the test'),
    );
    const outcomes = await pending;
    assert.equal(publisher.isOpen, false);
    for (const o of outcomes) {
      assert.deepEqual(o, { kind: 'transient', reason: 'not confirmed: channel closed' });
    }
    assert.equal(stats.publishSeconds.count, 0, 'a closed channel was timed as a broker answer');
  });
});
