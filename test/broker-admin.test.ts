import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerAdmin } from '../src/nestjs/broker-admin.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';

describe('nestjs: BrokerAdmin.queueDepths', () => {
  let broker: TestBroker;
  before(async () => {
    broker = await TestBroker.open();
  });
  after(() => broker.close());

  it('reads the depths of many queues on one channel without piling up listeners', async () => {
    // More queues than an emitter's default listener limit (10) on one channel, then a missing
    // one (a 404 closes its channel).
    const queues: string[] = [];
    for (let i = 0; i < 15; i += 1) queues.push(await broker.queue(`depth.${i}`));
    broker.channel.sendToQueue(queues[3]!, Buffer.from('x'));
    await broker.waitForDepth(queues[3]!, 1);
    const missing = broker.name('depth.missing');

    const admin = new BrokerAdmin({
      urls: [AMQP_URL],
      logger: silentLogger,
      connectionName: 'outboxkit broker-admin test',
    });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const depths = await admin.queueDepths([...queues, missing]);
      assert.equal(depths.size, 16);
      assert.equal(depths.get(queues[3]!), 1);
      assert.equal(depths.get(queues[0]!), 0);
      assert.equal(depths.get(missing), undefined);
      assert.ok(depths.has(missing));
      // Node reports a listener leak on the next tick.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
      await admin.close();
    }
    assert.deepEqual(
      warnings.map((w) => `${w.name}: ${w.message}`),
      [],
    );
  });
});
