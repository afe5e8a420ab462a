import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ConsumeContext, ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { delayQueueName, retryDueQueueName } from '../src/consumer/consumer-topology.js';
import { partitionSet } from '../src/consumer/partition-set.js';
import { resizePartitions } from '../src/consumer/resize-partitions.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor, within } from './support/wait-for.js';

/**
 * The bytes of amqplib's `checkQueue(queue)` (a passive, durable queue.declare): the queue's
 * name as a short string, then the flags octet, 0x03 (a declare that creates has 0x02).
 */
function passiveDeclareOf(queue: string): Buffer {
  const name = Buffer.from(queue);
  return Buffer.concat([Buffer.from([name.length]), name, Buffer.from([0x03])]);
}

// The drain counted the due queue, then the delay queues, and ended on a sum of 0: the retries
// that a delay queue dead-lettered into the due queue between those two counts were in neither.
// A classic set was then refused as `not-empty` (the due queue "received" them after its drain);
// a quorum delay queue, whose at-least-once dead-lettering holds a retry in neither queue's
// count until the due queue confirms it, could be deleted with the retry in it (found by a probe,
// which saw 20 of 24 messages drained). The proxy holds the drain's first count of the delay
// queue until the retries have left it, so that the move falls between two counts every time.
for (const queueType of ['classic', 'quorum'] as const)
  describe(`resizePartitions from 0: retries leaving a delay queue while the drain counts (${queueType} queues)`, () => {
    let f: ConsumerFixture;
    let proxy: TcpProxy;
    before(async () => {
      f = await ConsumerFixture.open(`rszmv${queueType[0]}`);
      const { hostname, port } = new URL(AMQP_URL);
      proxy = await TcpProxy.start(hostname, Number(port));
    });
    after(async () => {
      await f.stopHosts();
      const queue = f.name('moving');
      const set = partitionSet(queue, 2);
      const left = [...set.queues, queue, retryDueQueueName(queue), delayQueueName(queue, 3000)];
      for (const q of left) await f.channel.deleteQueue(q).catch(() => {});
      await f.channel.deleteExchange(set.exchange).catch(() => {});
      await f.channel.deleteExchange(`${queue}.drain`).catch(() => {});
      await proxy.close();
      await f.close();
    });

    it('handles every retry that moves to the due queue between two counts', async () => {
      const messages = 6;
      // Long enough for the resize to reach its first count before the retries are due.
      const delayMs = 3000;
      const retry = { maxAttempts: 10, backoff: { initialMs: delayMs, maxMs: delayMs } };
      const queue = f.name('moving');
      const delayQueue = delayQueueName(queue, delayMs);
      let draining = false;
      const failed = new Set<string>();
      const handler = async (payload: unknown, ctx: ConsumeContext) => {
        if (!draining) {
          failed.add(ctx.businessKey);
          throw new Error('fails until the drain');
        }
        await f.recordEffect(payload, ctx);
      };
      const at = (partitions?: number): ConsumerDefinition =>
        f.definition('moving', handler, {
          queueType,
          retry,
          ...(partitions !== undefined && { ordered: true, partitions }),
        });
      // Unordered, without partitions: every message fails once and waits in the delay queue.
      const plain = await f.host([at()], { logger: silentLogger });
      for (let i = 0; i < messages; i += 1) {
        await f.publish('k', { i }, { messageId: `moving-${i}` });
      }
      await waitFor(
        'every message failed, its retry in the delay queue',
        () => plain.stats(queue).retried === messages && plain.inFlight === 0,
      );
      await plain.stop();
      draining = true;

      const hold = proxy.holdAt(passiveDeclareOf(delayQueue));
      const resizing = resizePartitions({
        db: f.t.db,
        amqpUrl: proxy.url(AMQP_URL),
        schema: f.t.schema,
        consumer: at(2),
        from: 0,
        logger: silentLogger,
        reconnectBackoff: { initialMs: 20, maxMs: 200 },
      });
      await within(
        'the drain counting the delay queue',
        Promise.race([hold.reached, resizing.then(() => {})]),
      );
      assert.equal(failed.size, messages);
      await waitFor('the retries out of the delay queue', async () => {
        return (await f.depth(delayQueue)) === 0;
      });
      hold.release();
      const result = await resizing;

      assert.deepEqual(result, { drained: messages, oldSetFound: true });
      for (const q of [queue, retryDueQueueName(queue), delayQueue]) {
        assert.equal(await f.queueInfo(q), undefined, `${q} is gone`);
      }
      const effects = (await f.effects()).filter((e) => e.consumer === queue);
      assert.equal(effects.length, messages, 'every message applied exactly once');
    });
  });
