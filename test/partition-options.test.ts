import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { MAX_PARTITIONS, partitionSet } from '../src/consumer/partition-set.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { defineMessage, OutboxHandler } from '../src/nestjs/index.js';

const base: ConsumerDefinition = {
  name: 'billing.orders',
  exchange: 'orders',
  ordered: true,
  handler: async () => {},
};

describe('partitions: options and topology', () => {
  it('rejects partitions that are not a positive integer, too many, or without ordered', () => {
    const rejects = (partitions: unknown, ordered: boolean, pattern: RegExp) =>
      assert.throws(
        () => topologyOf({ ...base, ordered, partitions: partitions as number }),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'consumers[billing.orders].partitions' &&
          pattern.test(error.message),
      );
    rejects(0, true, /positive integer, got 0/);
    rejects(2.5, true, /positive integer, got 2.5/);
    rejects('4', true, /positive integer, got "4"/);
    rejects(MAX_PARTITIONS + 1, true, /at most 256/);
    rejects(4, false, /need `ordered: true`/);
  });

  it('declares a consistent-hash exchange on the ordering-key header and one ordered queue per partition', () => {
    const topology = topologyOf({ ...base, partitions: 12, queueType: 'classic' });
    const set = topology.partitions!;
    assert.equal(set.exchange, 'billing.orders.partitions-12');
    assert.deepEqual(set.exchangeArguments, { 'hash-header': 'x-ordering-key' });
    // Zero-padded: the plugin renumbers its buckets in name order after a broker restart, which
    // must be the order they were bound in (index order).
    assert.equal(set.queues[0], 'billing.orders.partition-00-of-12');
    assert.equal(set.queues[11], 'billing.orders.partition-11-of-12');
    assert.deepEqual(
      [...set.queues].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
      set.queues,
    );
    // Each partition is an ordered queue: single active consumer, retries in place, dead
    // letters to the consumer's one dead-letter queue.
    assert.equal(topology.queue.name, set.queues[0]);
    assert.deepEqual(topology.queue.arguments, {
      'x-queue-type': 'classic',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': 'billing.orders.dlq',
      'x-single-active-consumer': true,
    });
    assert.deepEqual(topology.delayQueues, []);
    assert.equal(topology.deadLetterQueue.name, 'billing.orders.dlq');
    assert.deepEqual(topologyQueueNames(topology), [...set.queues, 'billing.orders.dlq']);
    // A set of another size is another set: resizing never rebinds a live one.
    assert.notEqual(partitionSet('billing.orders', 8).exchange, set.exchange);
    assert.equal(topologyOf(base).partitions, undefined);
  });

  it('@OutboxHandler checks partitions when the class is defined', () => {
    const Changed = defineMessage<{ id: number }>({ exchange: 'orders', routingKey: 'changed' });
    const decorate = (options: Record<string, unknown>) => () => {
      class Handler {
        @OutboxHandler(Changed, { name: 'orders.changed', ...options })
        async run(): Promise<void> {}
      }
      return Handler;
    };
    assert.throws(
      decorate({ ordered: true, partitions: 0 }),
      (error: unknown) =>
        error instanceof ConfigurationError &&
        /`partitions` must be a positive integer, got 0/.test(error.message),
    );
    assert.throws(
      decorate({ partitions: 4 }),
      (error: unknown) =>
        error instanceof ConfigurationError && /need `ordered: true`/.test(error.message),
    );
    assert.doesNotThrow(decorate({ ordered: true, partitions: 4 }));
  });
});
