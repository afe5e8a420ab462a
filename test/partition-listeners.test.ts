import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { partitionSet } from '../src/consumer/partition-set.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';

describe('a consumer of many partitions', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('plisten');
  });
  after(async () => {
    await f.stopHosts();
    const set = partitionSet(f.name('wide'), 16);
    for (const q of set.queues) await f.channel.deleteQueue(q).catch(() => {});
    await f.channel.deleteExchange(set.exchange).catch(() => {});
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
});
