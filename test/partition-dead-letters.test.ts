import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { topologyOf } from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { waitFor } from './support/wait-for.js';

/**
 * A partitioned consumer has a queue per partition and none by its own name: a replay "to the
 * queue", the default, was unroutable for every message (and the dashboard, which has no `to`,
 * could never replay them).
 */
describe('partitions: replaying dead letters', () => {
  let f: ConsumerFixture;
  const readers: DeadLetterQueue[] = [];
  before(async () => {
    f = await ConsumerFixture.open('prdl');
  });
  after(async () => {
    for (const r of readers) await r.close();
    await f.channel.deleteExchange(topologyOf(definition()).partitions!.exchange).catch(() => {});
    await f.close();
  });

  /** Fails each message permanently the first time it is handled, then records its effect. */
  const failedOnce = new Set<string>();
  const definition = () =>
    f.definition(
      'partdl',
      async (payload, ctx) => {
        if (!failedOnce.has(ctx.businessKey)) {
          failedOnce.add(ctx.businessKey);
          throw new PermanentError('not yet');
        }
        await f.recordEffect(payload, ctx);
      },
      { ordered: true, partitions: 3 },
    );

  it('a replay with the default target reaches the key partitions, each message once', async () => {
    const consumer = definition();
    await f.host([consumer]);
    const messages = Array.from({ length: 6 }, (_, i) => ({
      routingKey: 'order.changed',
      content: { i },
      options: { messageId: `m-${i}`, headers: { [ORDERING_KEY_HEADER]: `key-${i}` } },
    }));
    await f.publishMany(messages);
    const dlq = topologyOf(consumer).deadLetterQueue.name;
    await f.waitForDepth(dlq, messages.length);

    const reader = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: consumer.name });
    readers.push(reader);
    const result = await reader.replay({});
    assert.deepEqual(result.failed, []);
    assert.equal(result.done, messages.length);
    await waitFor('every replayed message handled', async () => (await f.effectCount()) === 6);
    const keys = (await f.effects()).map((e) => e.key).sort();
    assert.deepEqual(keys, messages.map((m) => m.options.messageId).sort());
  });

  it('a dead letter that names no partition (an earlier version wrote it) fails, saying what to do', async () => {
    const consumer = definition();
    const dlq = topologyOf(consumer).deadLetterQueue.name;
    await f.channel.sendToQueue(dlq, Buffer.from('{}'), {
      messageId: 'old-1',
      contentType: 'application/json',
      headers: { [ORDERING_KEY_HEADER]: 'key-old' },
    });
    await f.waitForDepth(dlq, 1);
    const reader = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: consumer.name });
    readers.push(reader);
    const result = await reader.replay({});
    assert.equal(result.done, 0);
    assert.equal(result.failed.length, 1);
    assert.match(result.failed[0]!.error, /does not name a partition/);
    assert.match(result.failed[0]!.error, /to: "exchange"/);
    // Left where it was.
    assert.equal(await f.depth(dlq), 1);
  });
});
