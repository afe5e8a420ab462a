import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { delayQueueName, retryDueQueueName } from '../src/consumer/consumer-topology.js';
import { PartitionCountChangedError } from '../src/consumer/partition-count-changed-error.js';
import { CONSISTENT_HASH_EXCHANGE_TYPE, partitionSet } from '../src/consumer/partition-set.js';
import { resizePartitions } from '../src/consumer/resize-partitions.js';
import { UnpartitionedQueueError } from '../src/consumer/unpartitioned-queue-error.js';
import { StateError } from '../src/errors/state-error.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { waitFor } from './support/wait-for.js';

/** Publishes seq `from` to `to - 1` of keys `k0`... `k<keys - 1>`, interleaved. */
function publishKeyed(f: ConsumerFixture, keys: number, from: number, to: number) {
  const messages = [];
  for (let seq = from; seq < to; seq += 1) {
    for (let k = 0; k < keys; k += 1) {
      messages.push({
        routingKey: 'order.changed',
        content: { key: `k${k}`, seq },
        options: { messageId: `k${k}-${seq}`, headers: { [ORDERING_KEY_HEADER]: `k${k}` } },
      });
    }
  }
  return f.publishMany(messages);
}

// Both queue types: the old set's delete once used `ifEmpty`, which RabbitMQ 3.x refuses on
// quorum queues (the default), closing the connection and leaving both sets (found by a probe).
for (const queueType of ['classic', 'quorum'] as const)
  describe(`partitions: changing the count on a live system (${queueType} queues)`, () => {
    let f: ConsumerFixture;
    before(async () => {
      f = await ConsumerFixture.open(`prsz${queueType[0]}`);
    });
    after(async () => {
      await f.stopHosts();
      for (const n of [2, 3]) {
        const set = partitionSet(f.name('resize'), n);
        for (const q of set.queues) await f.channel.deleteQueue(q).catch(() => {});
        await f.channel.deleteExchange(set.exchange).catch(() => {});
        await f.channel.deleteExchange(`${set.exchange}.drain`).catch(() => {});
      }
      await f.close();
    });

    const keys = 8;
    const publishRange = (from: number, to: number) => publishKeyed(f, keys, from, to);

    /** Matches the refusal of a start at another count than the existing sets'. */
    const changedFrom = (existing: number[]) => (error: unknown) => {
      assert.ok(error instanceof PartitionCountChangedError, String(error));
      assert.equal(error.code, 'partition-count-changed');
      assert.equal(error.consumer, f.name('resize'));
      assert.deepEqual(error.existing, existing);
      assert.match(error.message, new RegExp(`resizePartitions\` with \`from: ${existing[0]}\``));
      return true;
    };

    it('keeps each key in order through a resize from 2 to 3 partitions while publishing goes on', async () => {
      const handler = async (payload: unknown, ctx: ConsumeContext) => {
        await f.recordEffect(payload, ctx);
        await new Promise((resolve) => setTimeout(resolve, 2));
      };
      const at = (partitions: number): ConsumerDefinition =>
        f.definition('resize', handler, { ordered: true, partitions, concurrency: 1, queueType });
      const hostOptions = { logger: silentLogger };

      // Before: 2 partitions, a backlog left behind when the processes stop.
      const before = await f.host([at(2)], hostOptions);
      await publishRange(0, 40);
      await waitFor('some handled', () => before.stats(f.name('resize')).handled >= 60);
      // A process still consuming the old set is refused.
      await assert.rejects(
        resizePartitions({
          db: f.t.db,
          amqpUrl: AMQP_URL,
          schema: f.t.schema,
          consumer: at(3),
          from: 2,
        }),
        (error: unknown) =>
          error instanceof StateError && /still consumes the old set/.test(error.message),
      );
      await before.stop();
      // Starting at another count without the resize is refused, before anything is declared:
      // the old set's backlog would be left behind, and the old set would keep a copy of all.
      await assert.rejects(f.host([at(3)], hostOptions), changedFrom([2]));
      assert.equal(await f.queueInfo(partitionSet(f.name('resize'), 3).queues[0]!), undefined);
      // Also when the new set's exchange exists already (a resize stopped half way).
      const three = partitionSet(f.name('resize'), 3);
      await f.channel.assertExchange(three.exchange, CONSISTENT_HASH_EXCHANGE_TYPE, {
        durable: true,
        arguments: { ...three.exchangeArguments },
      });
      await assert.rejects(f.host([at(3)], hostOptions), changedFrom([2]));
      const backlog = await Promise.all(
        partitionSet(f.name('resize'), 2).queues.map((q) => f.depth(q)),
      );
      assert.ok(backlog.reduce((a, b) => a + b, 0) > 0, 'the old set holds a backlog');

      // During: publishing goes on while the resize runs.
      let publishing = true;
      let publishedDuring = 0;
      const publisher = (async () => {
        for (let seq = 40; publishing && seq < 100; seq += 2) {
          await publishRange(seq, seq + 2);
          publishedDuring = seq + 2;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })();
      const result = await resizePartitions({
        db: f.t.db,
        amqpUrl: AMQP_URL,
        schema: f.t.schema,
        consumer: at(3),
        from: 2,
        logger: silentLogger,
        reconnectBackoff: { initialMs: 20, maxMs: 200 },
      });
      publishing = false;
      await publisher;
      assert.equal(result.oldSetFound, true);
      assert.ok(result.drained > 0, 'the resize handled the old backlog');
      assert.ok(publishedDuring > 40, 'messages were published during the resize');
      // The old set is gone; the new one exists.
      assert.equal(await f.queueInfo(partitionSet(f.name('resize'), 2).queues[0]!), undefined);
      assert.ok(await f.queueInfo(partitionSet(f.name('resize'), 3).queues[2]!));

      // A process of the previous deploy, started after the resize, is refused too.
      await assert.rejects(f.host([at(2)], hostOptions), changedFrom([3]));
      assert.equal(await f.queueInfo(partitionSet(f.name('resize'), 2).queues[0]!), undefined);

      // After: 3 partitions, and more messages.
      const afterwards = await f.host([at(3)], hostOptions);
      await publishRange(publishedDuring, publishedDuring + 20);
      const total = keys * (publishedDuring + 20);
      await waitFor('all handled', async () => (await f.effectCount()) >= total, 30_000);
      await waitFor('idle', () => afterwards.inFlight === 0);

      const effects = await f.effects();
      assert.equal(effects.length, total, 'every message applied exactly once');
      const order = new Map<string, number[]>();
      for (const e of effects) {
        const [key, seq] = e.key.split('-') as [string, string];
        order.set(key, [...(order.get(key) ?? []), Number(seq)]);
      }
      const expected = Array.from({ length: publishedDuring + 20 }, (_, i) => i);
      for (const [key, seqs] of order) assert.deepEqual(seqs, expected, `order of ${key}`);
    });
  });

describe('partitions: adding them to a consumer that had none', () => {
  let f: ConsumerFixture;
  /** `resizePartitions` from no partitions to `consumer`'s. */
  const addPartitions = (consumer: ConsumerDefinition) =>
    resizePartitions({
      db: f.t.db,
      amqpUrl: AMQP_URL,
      schema: f.t.schema,
      consumer,
      from: 0,
      logger: silentLogger,
      reconnectBackoff: { initialMs: 20, maxMs: 200 },
    });
  before(async () => {
    f = await ConsumerFixture.open('prszadd');
  });
  after(async () => {
    await f.stopHosts();
    for (const name of ['grow', 'loose']) {
      const set = partitionSet(f.name(name), 3);
      const queue = f.name(name);
      const left = [...set.queues, queue, retryDueQueueName(queue), delayQueueName(queue, 300)];
      for (const q of left) await f.channel.deleteQueue(q).catch(() => {});
      await f.channel.deleteExchange(set.exchange).catch(() => {});
      await f.channel.deleteExchange(`${queue}.drain`).catch(() => {});
    }
    await f.close();
  });

  it('refuses to start partitioned beside the old queue, and resizePartitions from 0 drains it in order', async () => {
    // Adding `partitions` started without a word: the old queue's backlog was never handled and
    // it kept a copy of every new message (found by a probe).
    const handler = async (payload: unknown, ctx: ConsumeContext) => f.recordEffect(payload, ctx);
    const at = (partitions?: number): ConsumerDefinition =>
      f.definition('grow', handler, {
        ordered: true,
        concurrency: 1,
        ...(partitions !== undefined && { partitions }),
      });
    const keys = 4;
    const publish = (from: number, to: number) => publishKeyed(f, keys, from, to);
    const plain = await f.host([at()], { logger: silentLogger });
    await plain.stop();
    await publish(0, 10);
    await assert.rejects(f.host([at(3)], { logger: silentLogger }), (error: unknown) => {
      assert.ok(error instanceof UnpartitionedQueueError, String(error));
      assert.equal(error.code, 'unpartitioned-queue-exists');
      assert.match(error.message, /40 messages ready.*resizePartitions` with `from: 0`/);
      return true;
    });
    const result = await addPartitions(at(3));
    assert.deepEqual(result, { drained: 40, oldSetFound: true });
    assert.equal(await f.queueInfo(f.name('grow')), undefined, 'the old queue is gone');
    const grown = await f.host([at(3)], { logger: silentLogger });
    await publish(10, 20);
    await waitFor('all handled', async () => (await f.effectCount()) >= 80, 30_000);
    await waitFor('idle', () => grown.inFlight === 0);
    const order = new Map<string, number[]>();
    for (const e of await f.effects()) {
      const [key, seq] = e.key.split('-') as [string, string];
      order.set(key, [...(order.get(key) ?? []), Number(seq)]);
    }
    const expected = Array.from({ length: 20 }, (_, i) => i);
    for (let k = 0; k < keys; k += 1)
      assert.deepEqual(order.get(`k${k}`), expected, `order of k${k}`);
  });

  it('resizePartitions from 0 takes an unordered consumer, its retries waiting included', async () => {
    // The drain host was ordered (the new definition's), so its declare of the old queue
    // conflicted (no single active consumer there) after the queue had been unbound; and the
    // retry copies in its delay queue would have come back to a due queue nobody consumed.
    const queue = f.name('loose');
    const retry = { maxAttempts: 100, backoff: { initialMs: 300, maxMs: 300 } };
    // The "-0" messages fail for as long as the first process runs, so their retries are left to
    // the drain however slow the machine is: failing only their first attempt, a loaded machine
    // had them come back and handled before that process stopped (drained 20, not 24).
    let draining = false;
    const failing = new Set<string>();
    const handler = async (payload: unknown, ctx: ConsumeContext) => {
      if (ctx.businessKey.endsWith('-0') && !draining) {
        failing.add(ctx.businessKey);
        throw new Error('fails until the drain');
      }
      await f.recordEffect(payload, ctx);
    };
    const plain = await f.host([f.definition('loose', handler, { retry })], {
      logger: silentLogger,
    });
    await publishKeyed(f, 4, 0, 5);
    await waitFor(
      '16 handled, 4 retries waiting',
      () => plain.stats(queue).handled === 16 && failing.size === 4 && plain.inFlight === 0,
    );
    await plain.stop();
    assert.equal(plain.stats(queue).handled, 16);
    draining = true;
    await publishKeyed(f, 4, 5, 10);
    const grown = (partitions?: number): ConsumerDefinition =>
      f.definition('loose', handler, {
        retry,
        ordered: true,
        ...(partitions !== undefined && { partitions }),
      });
    const result = await addPartitions(grown(3));
    assert.deepEqual(result, { drained: 24, oldSetFound: true });
    for (const q of [queue, retryDueQueueName(queue), delayQueueName(queue, 300)]) {
      assert.equal(await f.queueInfo(q), undefined, `${q} is gone`);
    }
    const effects = (await f.effects()).filter((e) => e.consumer === queue);
    assert.equal(effects.length, 40, 'every message applied exactly once');
    assert.equal(new Set(effects.map((e) => e.key)).size, 40);
    await f.host([grown(3)], { logger: silentLogger });
  });
});
