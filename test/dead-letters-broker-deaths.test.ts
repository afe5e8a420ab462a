import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

const HOUR_MS = 3600_000;

/**
 * Dead letters the broker moved itself: a message that expired in the consumer's queue (its
 * `x-dead-letter-*` arguments point at `<queue>.dlq`). Their `deadAt` was always unknown (the
 * code looked for a Date; amqplib gives `{ '!': 'timestamp', value }`), so age filters never
 * matched them and `purge --older-than` could not remove them; and the reason came from
 * `x-first-death-reason` while the queue and exchange came from `x-death[0]`: a message rejected
 * elsewhere before it expired in the consumer's queue was listed as `rejected` from that queue.
 */
describe('dead-letter queue: letters the broker dead-lettered itself', () => {
  let broker: TestBroker;
  let exchange: string;
  let queue: string;
  let dlq: string;
  before(async () => {
    broker = await TestBroker.open();
    exchange = await broker.exchange('events');
    dlq = await broker.queue('orders.dlq');
    queue = await broker.queue('orders', exchange, '#', {
      arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': dlq },
    });
  });
  after(() => broker.close());

  it('reads the reason, queue, exchange and time of the hop into this queue', async () => {
    const seconds = Math.floor(Date.now() / 1000);
    const earlierHop = {
      count: 1,
      reason: 'rejected',
      queue: 'legacy',
      time: { '!': 'timestamp', value: seconds - 60 },
      exchange: 'legacy-ex',
      'routing-keys': ['legacy.key'],
    };
    const publish = (routingKey: string, messageId: string, headers: object) =>
      broker.channel.publish(exchange, routingKey, Buffer.from('{}'), {
        messageId,
        expiration: '1',
        headers,
      });
    publish('order.plain', 'expired-plain', {});
    // Routed through another dead-lettering setup before it reached the consumer's queue.
    publish('order.routed', 'expired-after-reject', {
      'x-death': [earlierHop],
      'x-first-death-exchange': 'legacy-ex',
      'x-first-death-queue': 'legacy',
      'x-first-death-reason': 'rejected',
    });
    // One the broker moved two hours ago.
    broker.channel.sendToQueue(dlq, Buffer.from('{}'), {
      messageId: 'expired-long-ago',
      headers: {
        'x-death': [
          {
            count: 1,
            reason: 'expired',
            queue,
            time: { '!': 'timestamp', value: seconds - 7200 },
            exchange,
            'routing-keys': ['order.old'],
          },
          earlierHop,
        ],
        'x-first-death-reason': 'rejected',
      },
    });
    // A classic queue drops an expired message when it reaches the head: a check moves it along.
    await waitFor('both expired', async () => {
      await broker.depth(queue);
      return (await broker.depth(dlq)) === 3;
    });

    const reader = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue });
    try {
      const letters = await reader.list({});
      const byId = new Map(letters.map((l) => [l.messageId, l]));
      for (const [id, routingKey] of [
        ['expired-plain', 'order.plain'],
        ['expired-after-reject', 'order.routed'],
      ] as const) {
        const letter = byId.get(id)!;
        assert.equal(letter.reason, 'expired', id);
        assert.equal(letter.consumedFrom, queue, id);
        assert.equal(letter.exchange, exchange, id);
        assert.equal(letter.routingKey, routingKey, id);
        assert.ok(letter.deadAt, `${id}: deadAt`);
        assert.ok(Math.abs(letter.deadAt.getTime() - Date.now()) < 60_000, id);
      }
      const old = byId.get('expired-long-ago')!;
      assert.equal(old.reason, 'expired');
      assert.equal(old.deadAt?.getTime(), (seconds - 7200) * 1000);

      const ids = (found: Array<{ messageId: string | undefined }>) =>
        found.map((l) => l.messageId).sort();
      assert.deepEqual(ids(await reader.list({ newerThanMs: HOUR_MS })), [
        'expired-after-reject',
        'expired-plain',
      ]);
      assert.deepEqual(ids(await reader.list({ olderThanMs: HOUR_MS })), ['expired-long-ago']);
      assert.deepEqual(await reader.list({ reason: 'rejected' }), []);

      const purged = await reader.purge({ olderThanMs: HOUR_MS });
      assert.equal(purged.done, 1);
      assert.deepEqual(ids(await reader.list({})), ['expired-after-reject', 'expired-plain']);
    } finally {
      await reader.close();
    }
  });
});
