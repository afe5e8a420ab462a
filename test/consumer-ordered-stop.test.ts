import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

/**
 * An ordered consumer stopped gracefully while deliveries of its keys wait in the process, and
 * more are on their way: they go back to the queue ahead of the keys' later messages, on either
 * queue type. A quorum queue puts a nacked message behind the rest, and so too the deliveries a
 * cancel catches on their way.
 */
describe('idempotent consumer: ordered, across graceful stops', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cordstop');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  for (const queueType of ['quorum', 'classic'] as const) {
    it(`keeps each key's order on a ${queueType} queue stopped three times mid-stream`, async () => {
      const name = f.name(`stop-${queueType}`);
      const keys = 3;
      const perKey = 40;
      const handler = async (payload: unknown, ctx: ConsumeContext) => {
        await delay(5);
        await f.recordEffect(payload, ctx);
      };
      const def = f.definition(`stop-${queueType}`, handler, {
        routingKeys: [`stop-${queueType}`],
        ordered: true,
        queueType,
        concurrency: 2,
        prefetch: 30,
      });
      const messages = [];
      for (let seq = 0; seq < perKey; seq += 1) {
        for (let k = 0; k < keys; k += 1) {
          messages.push({
            routingKey: `stop-${queueType}`,
            content: { seq },
            options: { messageId: `k${k}-${seq}`, headers: { [ORDERING_KEY_HEADER]: `k${k}` } },
          });
        }
      }
      let host = await f.host([def]);
      await f.publishMany(messages);
      const handled = async () => (await f.effects()).filter((e) => e.consumer === name).length;
      for (const stopAt of [15, 45, 80]) {
        await waitFor(`${stopAt} handled`, async () => (await handled()) >= stopAt, 30_000);
        await host.stop();
        host = await f.host([def]);
      }
      await waitFor('all handled', async () => (await handled()) === keys * perKey, 30_000);

      const order = new Map<string, number[]>();
      for (const e of (await f.effects()).filter((x) => x.consumer === name)) {
        const [key, seq] = e.key.split('-') as [string, string];
        order.set(key, [...(order.get(key) ?? []), Number(seq)]);
      }
      const expected = Array.from({ length: perKey }, (_, i) => i);
      for (const [key, seqs] of order) assert.deepEqual(seqs, expected, `order of ${key}`);
    });
  }
});

describe('idempotent consumer: ordered, when a dead-letter copy is not taken', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cordcopy');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  // The copy failed and the delivery was nacked: the key was released, and its later messages,
  // waiting in the process, ran before it came back.
  it("hands the message back ahead of its key's later ones, and dead-letters it then", async () => {
    const name = f.name('copyfail');
    const calls: number[] = [];
    const def = f.definition(
      'copyfail',
      async (payload: { seq: number }) => {
        calls.push(payload.seq);
        if (payload.seq === 0) throw new PermanentError('refused for good');
      },
      { routingKeys: ['copyfail'], ordered: true, queueType: 'classic', concurrency: 2 },
    );
    const host = await f.host([def]);
    // An operator's clean-up: the first copy comes back unroutable, and the queue is declared again.
    await f.broker.channel.deleteQueue(deadLetterQueueName(name));
    await f.publishMany(
      [0, 1, 2].map((seq) => ({
        routingKey: 'copyfail',
        content: { seq },
        options: { messageId: `k-${seq}`, headers: { [ORDERING_KEY_HEADER]: 'k' } },
      })),
    );
    await waitFor(
      'dead-lettered, and the later messages handled',
      () => host.stats(name).deadLettered === 1 && calls.length >= 4,
    );
    assert.deepEqual(calls, [0, 0, 1, 2]);
    // On a channel of its own: a 404 while the queue was missing would close a shared one.
    assert.equal((await f.queueInfo(deadLetterQueueName(name)))?.messageCount, 1);
  });
});
