import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('idempotent consumer: ordered', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cord');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  /** Messages `<key>-<seq>`, published round-robin across keys, in seq order per key. */
  const publishKeyed = (routingKey: string, keys: number, perKey: number, firstSeq = 0) => {
    const messages = [];
    for (let seq = firstSeq; seq < firstSeq + perKey; seq += 1) {
      for (let k = 0; k < keys; k += 1) {
        messages.push({
          routingKey,
          content: { key: `k${k}`, seq },
          options: { messageId: `k${k}-${seq}`, headers: { [ORDERING_KEY_HEADER]: `k${k}` } },
        });
      }
    }
    return f.publishMany(messages);
  };

  /** seq numbers per key, in commit order. */
  const committedOrder = async (consumer: string) => {
    const order = new Map<string, number[]>();
    for (const e of (await f.effects()).filter((x) => x.consumer === consumer)) {
      const [key, seq] = e.key.split('-') as [string, string];
      order.set(key, [...(order.get(key) ?? []), Number(seq)]);
    }
    return order;
  };

  it('handles each key in publish order, one at a time, while keys run concurrently', async () => {
    const name = f.name('ordered');
    const keys = 12;
    const perKey = 40;
    let running = 0;
    let peak = 0;
    const busyKeys = new Set<string>();
    const overlaps: string[] = [];
    const handler = async (payload: { key: string; seq: number }, ctx: ConsumeContext) => {
      if (busyKeys.has(payload.key)) overlaps.push(ctx.businessKey);
      busyKeys.add(payload.key);
      running += 1;
      peak = Math.max(peak, running);
      try {
        await f.recordEffect(payload, ctx);
        // A retrying message of a key must hold back the key's later messages.
        if (ctx.businessKey === 'k0-5' && ctx.attempt === 1) throw new Error('k0-5 fails once');
      } finally {
        running -= 1;
        busyKeys.delete(payload.key);
      }
    };
    const def = f.definition('ordered', handler, {
      routingKeys: ['ordered'],
      ordered: true,
      concurrency: 4,
      prefetch: 32,
      retry: { maxAttempts: 3, backoff: { initialMs: 50, maxMs: 50 } },
    });
    const host = await f.host([def]);
    await publishKeyed('ordered', keys, perKey);
    await waitFor('all handled', () => host.stats(name).handled === keys * perKey, 30_000);

    const order = await committedOrder(name);
    assert.equal(order.size, keys);
    const expected = Array.from({ length: perKey }, (_, i) => i);
    for (const [key, seqs] of order) assert.deepEqual(seqs, expected, `order of ${key}`);
    assert.deepEqual(overlaps, [], 'two messages of one key never ran at once');
    assert.ok(peak > 1, `keys ran concurrently (peak ${peak})`);
    assert.ok(peak <= 4, `at most concurrency handlers at once (peak ${peak})`);
    const stats = host.stats(name);
    assert.equal(stats.retried, 1);
    const retried = (await f.effects()).find((e) => e.key === 'k0-5');
    assert.equal(retried?.attempt, 2);
  });

  it('lets one process consume an ordered queue at a time (single active consumer)', async () => {
    const name = f.name('sac');
    const def = f.definition('sac', f.recordEffect, {
      routingKeys: ['sac'],
      ordered: true,
      concurrency: 2,
    });
    const first = await f.host([def]);
    const second = await f.host([def]);
    await publishKeyed('sac', 3, 10);
    await waitFor(
      '30 handled',
      () => first.stats(name).handled + second.stats(name).handled === 30,
    );
    const active = first.stats(name).received > 0 ? first : second;
    const standby = active === first ? second : first;
    assert.equal(standby.stats(name).received, 0, 'the standby received nothing');
    await active.stop();
    await publishKeyed('sac', 3, 2, 10);
    await waitFor('the standby to take over', () => standby.stats(name).handled === 6);
    const order = await committedOrder(name);
    for (const [key, seqs] of order) {
      assert.deepEqual(
        seqs,
        Array.from({ length: 12 }, (_, i) => i),
        `order of ${key}`,
      );
    }
  });
});
