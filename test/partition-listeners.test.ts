import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { partitionRosterQueueName, partitionSet } from '../src/consumer/partition-set.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

describe('a consumer of many partitions', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('plisten');
  });
  after(async () => {
    await f.stopHosts();
    for (const [name, n] of [
      ['wide', 16],
      ['brief', 2],
    ] as const) {
      const set = partitionSet(f.name(name), n);
      for (const q of set.queues) await f.channel.deleteQueue(q).catch(() => {});
      await f.channel.deleteExchange(set.exchange).catch(() => {});
    }
    await f.channel.deleteQueue(partitionRosterQueueName(f.name('brief'))).catch(() => {});
    await f.close();
  });

  it('starts without a MaxListenersExceededWarning', async () => {
    // Each partition declaring its set listened for the connection's errors at once: past 10,
    // Node warned of a leak that was none (found by a probe).
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const host = await f.host(
        [f.definition('wide', f.recordEffect, { ordered: true, partitions: 16 })],
        { logger: silentLogger },
      );
      await host.stop();
      // Warnings are emitted on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    );
  });

  it('declares each partition queue once at start, not once per partition', async () => {
    // Each partition's runner declared the whole set again right after the host had: 16 × 17
    // queue declares for 16 partitions (about 130,000 declares for 255).
    const set = partitionSet(f.name('wide'), 16);
    const queues = new Set(set.queues);
    let owner: object | null = f.channel;
    while (owner !== null && !Object.hasOwn(owner, 'assertQueue')) {
      owner = Object.getPrototypeOf(owner) as object | null;
    }
    assert.ok(owner, "amqplib's channel has an assertQueue");
    const proto = owner as { assertQueue: (queue: string, ...rest: unknown[]) => unknown };
    const assertQueue = proto.assertQueue;
    let declares = 0;
    proto.assertQueue = function (this: unknown, queue: string, ...rest: unknown[]) {
      if (queues.has(queue)) declares += 1;
      return assertQueue.call(this, queue, ...rest);
    };
    try {
      const host = await f.host(
        [f.definition('wide', f.recordEffect, { ordered: true, partitions: 16 })],
        { logger: silentLogger },
      );
      await host.stop();
    } finally {
      proto.assertQueue = assertQueue;
    }
    assert.equal(declares, 16);
  });

  it('leaves no roster queue behind when stopped right after its start', async () => {
    // The stop closed the connection while the roster's join was under way: its auto-delete
    // queue, declared but never consumed, was never deleted (found by a probe, now and then).
    const roster = partitionRosterQueueName(f.name('brief'));
    for (let round = 1; round <= 5; round += 1) {
      const host = await f.host(
        [f.definition('brief', f.recordEffect, { ordered: true, partitions: 2 })],
        { logger: silentLogger },
      );
      await host.stop();
      await waitFor(
        `the roster queue gone after stop ${round}`,
        async () => ((await f.queueInfo(roster)) === undefined ? true : undefined),
        5_000,
      );
    }
  });
});
