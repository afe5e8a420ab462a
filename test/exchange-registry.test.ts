import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AmqpConnection } from '../src/amqp/amqp-connection.js';
import { ExchangeRegistry } from '../src/relay/exchange-registry.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';

describe('ExchangeRegistry', () => {
  let broker: TestBroker;
  let amqp: AmqpConnection;
  before(async () => {
    broker = await TestBroker.open();
    amqp = new AmqpConnection({
      urls: [AMQP_URL],
      heartbeatSeconds: 5,
      reconnectBackoff: { initialMs: 20, maxMs: 200 },
      logger: silentLogger,
      connectionName: 'exchange-registry-test',
    });
    amqp.start();
    assert.ok(await amqp.ready());
  });
  after(async () => {
    await amqp.close();
    await broker.close();
  });

  it('answers lanes that check at the same time, one missing exchange among them', async () => {
    const existing = await Promise.all(
      Array.from({ length: 8 }, (_, i) => broker.exchange(`lane-${i}`)),
    );
    const registry = new ExchangeRegistry(amqp);
    const answers = await Promise.all(
      existing.map((name, i) => registry.missing([name, broker.name(`missing-${i}`)])),
    );
    answers.forEach((missing, i) => {
      assert.deepEqual([...missing.keys()], [broker.name(`missing-${i}`)]);
    });
    await registry.close();
  });
});
