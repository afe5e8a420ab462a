import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { CamelCasePlugin } from 'kysely';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('idempotent consumer: duplicates', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cdup');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  /** Publishes one message id three times, 0, 25 and 50 ms apart. */
  const publishThrice = async (routingKey: string, messageId: string) => {
    for (const gap of [0, 25, 25]) {
      if (gap > 0) await delay(gap);
      await f.publish(routingKey, { hello: 'world' }, { messageId });
    }
  };

  /** Holds the first handler until all three copies were delivered, so they overlap. */
  const overlappingHandler =
    (host: () => ConsumerHost, name: string) => async (payload: unknown, ctx: ConsumeContext) => {
      await waitFor(
        'three deliveries in flight',
        () => host().stats(name).received === 3,
        10_000,
        5,
      );
      await f.recordEffect(payload, ctx);
    };

  for (const isolationLevel of ['read committed', 'serializable'] as const) {
    it(`three overlapping deliveries of one message have one effect (${isolationLevel})`, async () => {
      const suffix = isolationLevel === 'serializable' ? 'three-ser' : 'three-rc';
      const name = f.name(suffix);
      let host!: ConsumerHost;
      const def = f.definition(
        suffix,
        overlappingHandler(() => host, name),
        {
          routingKeys: [suffix],
          concurrency: 4,
          prefetch: 8,
          isolationLevel,
        },
      );
      host = await f.host([def]);
      await publishThrice(suffix, `${suffix}-m1`);
      await waitFor('all three settled', () => {
        const s = host.stats(name);
        return s.handled + s.duplicates === 3;
      });
      const stats = host.stats(name);
      assert.equal(stats.received, 3);
      assert.equal(stats.handled, 1);
      assert.equal(stats.duplicates, 2);
      assert.equal(stats.failures, 0);
      assert.equal(stats.deadLettered, 0);
      if (isolationLevel === 'serializable') {
        // The copies collided with the first commit and were run again, not failed.
        assert.ok(
          stats.serializationRetries >= 1,
          `serializationRetries ${stats.serializationRetries}`,
        );
      }
      const effects = (await f.effects()).filter((e) => e.consumer === name);
      assert.equal(effects.length, 1);
      assert.equal(effects[0]!.key, `${suffix}-m1`);
      assert.equal(await f.depth(name), 0);
    });
  }

  it('two copies handed to two consumer processes at once have one effect', async () => {
    const name = f.name('procs');
    const hosts: ConsumerHost[] = [];
    const received = () => hosts.reduce((n, h) => n + h.stats(name).received, 0);
    const def = f.definition(
      'procs',
      async (payload, ctx) => {
        // Both copies are in flight, one in each process, before either commits.
        await waitFor('both copies delivered', () => received() === 2, 10_000, 5);
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['procs'], concurrency: 2 },
    );
    hosts.push(await f.host([def]), await f.host([def]));
    await f.publishMany([
      { routingKey: 'procs', content: { p: 1 }, options: { messageId: 'procs-1' } },
      { routingKey: 'procs', content: { p: 1 }, options: { messageId: 'procs-1' } },
    ]);
    await waitFor('both settled', () =>
      hosts.every((h) => h.stats(name).handled + h.stats(name).duplicates === 1),
    );
    assert.deepEqual(
      hosts.map((h) => h.stats(name).received),
      [1, 1],
      'the broker gave one copy to each process',
    );
    assert.equal(
      hosts.reduce((n, h) => n + h.stats(name).handled, 0),
      1,
    );
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 1);
  });

  it('the same business key under different message ids has one effect', async () => {
    const name = f.name('bizkey');
    const def = f.definition<{ orderId: string }>('bizkey', f.recordEffect, {
      routingKeys: ['bizkey'],
      concurrency: 4,
      businessKey: (payload) => `order-${payload.orderId}`,
    });
    const host = await f.host([def]);
    await f.publishMany([
      { routingKey: 'bizkey', content: { orderId: '1' }, options: { messageId: 'a' } },
      { routingKey: 'bizkey', content: { orderId: '1' }, options: { messageId: 'b' } },
      { routingKey: 'bizkey', content: { orderId: '2' }, options: { messageId: 'c' } },
      { routingKey: 'bizkey', content: { orderId: '1' }, options: { messageId: 'd' } },
    ]);
    await waitFor('four settled', () => {
      const s = host.stats(name);
      return s.handled + s.duplicates === 4;
    });
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(effects.map((e) => e.key).sort(), ['order-1', 'order-2']);
    assert.equal(host.stats(name).duplicates, 2);
  });

  it('two consumers of one message each have one effect', async () => {
    const a = f.definition('two-a', f.recordEffect, { routingKeys: ['two'] });
    const b = f.definition('two-b', f.recordEffect, { routingKeys: ['two'] });
    const host = await f.host([a, b]);
    await f.publish('two', { n: 1 }, { messageId: 'shared-id' });
    // A redelivered copy must not count twice either.
    await f.publish('two', { n: 1 }, { messageId: 'shared-id' });
    await waitFor('both consumers settled both copies', () =>
      [a.name, b.name].every((n) => host.stats(n).handled + host.stats(n).duplicates === 2),
    );
    const effects = (await f.effects()).filter((e) => e.key === 'shared-id');
    assert.deepEqual(effects.map((e) => e.consumer).sort(), [a.name, b.name].sort());
  });

  it('batched, on a db with plugins that rewrite results (CamelCasePlugin): each handler runs', async () => {
    const name = f.name('camel');
    const def = f.definition('camel', f.recordEffect, {
      routingKeys: ['camel'],
      concurrency: 1,
      batchSize: 10,
    });
    // The claim's own statements must not go through the application's plugins: renamed
    // columns would make every key of a batch look claimed before.
    const host = await f.host([def], { db: f.t.db.withPlugin(new CamelCasePlugin()) });
    const ids = Array.from({ length: 20 }, (_, i) => `camel${i}`);
    await f.publishMany(
      ids.map((id) => ({ routingKey: 'camel', content: { id }, options: { messageId: id } })),
    );
    await waitFor('20 settled', () => {
      const s = host.stats(name);
      return s.handled + s.duplicates === 20;
    });
    const stats = host.stats(name);
    assert.equal(stats.duplicates, 0);
    assert.equal(stats.handled, 20);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(effects.length, 20);
  });

  it('batched: duplicates inside and across batches have one effect each', async () => {
    const name = f.name('batched');
    const def = f.definition('batched', f.recordEffect, {
      routingKeys: ['batched'],
      concurrency: 3,
      batchSize: 25,
    });
    const host = await f.host([def]);
    const ids = Array.from({ length: 300 }, (_, i) => `b${i}`);
    // Every id twice: once in order, once shuffled, so copies land in one batch or two.
    const shuffled = [...ids].sort(() => Math.random() - 0.5);
    await f.publishMany(
      [...ids, ...shuffled].map((id) => ({
        routingKey: 'batched',
        content: { id },
        options: { messageId: id },
      })),
    );
    await waitFor('600 settled', () => {
      const s = host.stats(name);
      return s.handled + s.duplicates === 600;
    });
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(effects.length, 300);
    assert.equal(new Set(effects.map((e) => e.key)).size, 300);
    const stats = host.stats(name);
    assert.equal(stats.handled, 300);
    assert.equal(stats.duplicates, 300);
    assert.ok(stats.batches > 0, 'some transactions held several deliveries');
    assert.equal(stats.batchFallbacks, 0);
  });
});
