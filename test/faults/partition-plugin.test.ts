import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PartitionsPluginMissingError } from '../../src/consumer/partitions-plugin-missing-error.js';
import { ConsumerFixture } from '../support/consumer-fixture.js';
import { PrivateRabbitMq } from './private-rabbitmq.js';

// A private node, because the machine's broker has the plugin enabled: a node of the suite's
// own starts with no plugins at all.
describe('partitions: the consistent-hash exchange plugin is missing', () => {
  let node: PrivateRabbitMq;
  let f: ConsumerFixture;
  before(async () => {
    [node, f] = await Promise.all([PrivateRabbitMq.start(), ConsumerFixture.open('pplug')]);
  });
  after(async () => {
    await f?.close();
    await node?.destroy();
  });

  it('refuses to start with a typed error naming the plugin and the command', async () => {
    const definition = f.definition('plugin', f.recordEffect, { ordered: true, partitions: 3 });
    const host = await f.host([definition], { amqpUrl: node.url, startTimeoutMs: 20_000 }, false);
    await assert.rejects(host.start(), (error: unknown) => {
      assert.ok(error instanceof PartitionsPluginMissingError, String(error));
      assert.equal(error.code, 'partitions-plugin-missing');
      assert.equal(error.exchange, `${definition.name}.partitions-3`);
      assert.match(error.message, /rabbitmq-plugins enable rabbitmq_consistent_hash_exchange/);
      // The broker's own words are kept as the cause.
      assert.match(
        String((error.cause as Error).message),
        /unknown exchange type 'x-consistent-hash'/,
      );
      return true;
    });
    assert.equal(host.isRunning, false);
    // The same consumer without partitions starts on that node.
    const plain = f.definition('plain', f.recordEffect, { ordered: true });
    const other = await f.host([plain], { amqpUrl: node.url });
    assert.equal(other.isRunning, true);
    await other.stop();
  });
});
