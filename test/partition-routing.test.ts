import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { topologyOf } from '../src/consumer/consumer-topology.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';

describe('partitions: routing on the broker', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('prte');
  });
  after(async () => {
    await f.channel.deleteExchange(topologyOf(definition()).partitions!.exchange).catch(() => {});
    await f.close();
  });

  const definition = () =>
    f.definition('routing', f.recordEffect, {
      ordered: true,
      partitions: 4,
      routingKeys: ['order.*'],
    });

  it('sends every message of a key to one partition, keyless ones to one, and only matching routing keys', async () => {
    // Declare the set, then stop: the messages stay in the partitions to be looked at.
    const host = await f.host([definition()]);
    await host.stop();
    const messages = [];
    for (let i = 0; i < 400; i += 1) {
      const keyed = i % 10 !== 0;
      messages.push({
        routingKey: i % 50 === 1 ? 'invoice.sent' : 'order.changed',
        content: { i },
        options: {
          messageId: `m-${i}`,
          ...(keyed && { headers: { [ORDERING_KEY_HEADER]: `key-${i % 97}` } }),
        },
      });
    }
    await f.publishMany(messages);

    const partitionOf = new Map<string, number>();
    const perPartition: number[] = [];
    let total = 0;
    for (const [p, queue] of topologyOf(definition()).partitions!.queues.entries()) {
      const drained = await f.drain(queue);
      perPartition.push(drained.length);
      total += drained.length;
      for (const m of drained) {
        const key = String(m.properties.headers?.[ORDERING_KEY_HEADER] ?? '(none)');
        assert.equal(partitionOf.get(key) ?? p, p, `${key} reached two partitions`);
        partitionOf.set(key, p);
        assert.equal(m.fields.routingKey, 'order.changed');
      }
    }
    // 8 of the 400 carry a routing key the consumer does not bind.
    assert.equal(total, 400 - 8);
    assert.ok(partitionOf.has('(none)'), 'keyless messages were routed');
    assert.ok(
      perPartition.every((n) => n > 0),
      `every partition got keys: ${perPartition.join(', ')}`,
    );
  });
});
