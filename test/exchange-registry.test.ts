import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AmqpConnection } from '../src/amqp/amqp-connection.js';
import { ExchangeRegistry } from '../src/relay/exchange-registry.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
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
      existing.map((name, i) => registry.unusable([name, broker.name(`missing-${i}`)])),
    );
    answers.forEach((missing, i) => {
      assert.deepEqual([...missing.keys()], [broker.name(`missing-${i}`)]);
    });
    await registry.close();
  });

  // Written by SQL, such names failed every batch they were in: amqplib cannot send the long one
  // (and its channel was left waiting), the broker refuses to check the default exchange (403).
  it('parks the rows of an exchange no exchange can be named, without asking the broker', async () => {
    const registry = new ExchangeRegistry(amqp);
    const existing = await broker.exchange('named');
    const unusable = await registry.unusable([
      '',
      'e'.repeat(300),
      'amq.never',
      'amq.default',
      existing,
    ]);
    assert.deepEqual([...unusable.keys()], ['', 'e'.repeat(300), 'amq.never', 'amq.default']);
    assert.equal(unusable.get('')?.kind, 'permanent');
    // In the writer's words: why the default exchange is refused, and what to do instead.
    assert.match(
      (unusable.get('') as { reason: string }).reason,
      /^invalid exchange: `exchange` "" is RabbitMQ's default exchange, which outboxkit does not publish to: the relay checks that an exchange exists .* refuses that check on the default exchange \(403\)\. Declare an exchange and bind the queue to it/,
    );
    assert.match((unusable.get('e'.repeat(300)) as { reason: string }).reason, /got 300 bytes$/);
    assert.match((unusable.get('amq.never') as { reason: string }).reason, /is reserved/);
    assert.match(
      (unusable.get('amq.default') as { reason: string }).reason,
      /^invalid exchange: `exchange` "amq.default" is the management UI's name of RabbitMQ's default exchange \(""\), which outboxkit does not publish to: .*bind the queue to it/,
    );
    await registry.close();
  });

  it('puts off the rows of an exchange whose check the broker refuses, and checks the others', async () => {
    const existing = await broker.exchange('checked');
    const refusedName = broker.name('refused');
    const missingName = broker.name('missing');
    // The broker refuses this one check as it would for a reason of its own: asked about the
    // default exchange instead, it closes the channel with 403 ACCESS_REFUSED.
    // What the registry uses of a connection: its channels, and its 'connected' event.
    const refusing = {
      on: () => refusing,
      channel: async (signal?: AbortSignal) => {
        const channel = await amqp.channel(signal);
        if (channel) {
          const check = channel.checkExchange.bind(channel);
          channel.checkExchange = (name: string) => check(name === refusedName ? '' : name);
        }
        return channel;
      },
    } as unknown as AmqpConnection;
    const logger = recordingLogger();
    const registry = new ExchangeRegistry(refusing, { logger });
    for (let round = 0; round < 2; round += 1) {
      const unusable = await registry.unusable([refusedName, existing, missingName]);
      assert.deepEqual([...unusable.keys()], [refusedName, missingName]);
      const refused = unusable.get(refusedName);
      assert.equal(refused?.kind, 'deferred');
      assert.match((refused as { reason: string }).reason, /^exchange check refused: .*403/);
      assert.equal(unusable.get(missingName)?.kind, 'deferred');
    }
    // Once per exchange, not once per batch.
    const warned = logger.lines.filter((l) => l.text.includes('could not be checked'));
    assert.equal(warned.length, 1);
    await registry.close();
  });
});
