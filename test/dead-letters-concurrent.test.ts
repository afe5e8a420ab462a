import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChannelModel, Message } from 'amqplib';
import * as amqp from 'amqplib';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/** Enough dead letters that one scan is still reading when another starts. */
const N = 1000;

const ids = (count: number) => Array.from({ length: count }, (_, i) => `m${i}`);

/**
 * A read takes a dead-letter queue's messages unacked, which hides them from every other reader
 * until it hands them back: readers that overlapped used to split the queue between them (a
 * partial list, a false "not found", a replay that missed some). Each must see all of it.
 */
describe('dead letters: concurrent readers of one dead-letter queue', () => {
  let broker: TestBroker;
  let model: ChannelModel;
  before(async () => {
    broker = await TestBroker.open();
    model = await amqp.connect(AMQP_URL);
    model.on('error', () => {});
  });
  after(async () => {
    await model?.close().catch(() => {});
    await broker?.close();
  });

  /** A consumer's queue and its classic dead-letter queue holding `count` dead letters. */
  async function queueWithDeadLetters(suffix: string, count = N): Promise<string> {
    const queue = await broker.queue(suffix);
    const dlq = await broker.queue(deadLetterQueueName(suffix));
    assert.equal(dlq, deadLetterQueueName(queue));
    for (const [i, id] of ids(count).entries()) {
      broker.channel.sendToQueue(dlq, Buffer.from(JSON.stringify({ i })), {
        messageId: id,
        persistent: true,
        contentType: 'application/json',
        headers: { [OUTBOXKIT_HEADERS.reason]: 'permanent-error' },
      });
    }
    await broker.waitForDepth(dlq, count);
    return queue;
  }

  /** Resolves once some scan holds messages of `dlq`: its depth fell below `count`. */
  function someoneReading(dlq: string, count = N) {
    return waitFor(
      `a reader to hold messages of ${dlq}`,
      async () => (await broker.depth(dlq)) < count,
      30_000,
      1,
    );
  }

  const readers: DeadLetterQueue[] = [];
  // Readers wait for each other's whole scans of N dead letters: on a loaded machine two of them
  // took over the default 5 s (dead-letter-queue-busy), which is not what these tests test.
  const reader = (queue: string, options: { busyTimeoutMs?: number; amqpUrl?: string } = {}) => {
    const r = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue, busyTimeoutMs: 60_000, ...options });
    readers.push(r);
    return r;
  };
  after(async () => {
    for (const r of readers) await r.close();
  });

  it('two concurrent list() calls both return every dead letter, in queue order', async () => {
    const queue = await queueWithDeadLetters('two-lists');
    const [a, b] = [reader(queue), reader(queue)];
    const [listedA, listedB] = await Promise.all([
      a.list({}, { limit: 100_000 }),
      b.list({}, { limit: 100_000 }),
    ]);
    assert.equal(listedA.length, N, `the first list saw ${listedA.length} of ${N}`);
    assert.equal(listedB.length, N, `the second list saw ${listedB.length} of ${N}`);
    assert.deepEqual(
      listedA.map((d) => d.messageId),
      ids(N),
    );
    assert.deepEqual(
      listedB.map((d) => d.messageId),
      ids(N),
    );
    const left = await broker.drain(deadLetterQueueName(queue));
    assert.deepEqual(
      left.map((m) => m.properties.messageId),
      ids(N),
    );
  });

  it('replayOne of a dead letter that is there succeeds while another list() is reading', async () => {
    const queue = await queueWithDeadLetters('list-replay');
    const dlq = deadLetterQueueName(queue);
    const [lister, replayer] = [reader(queue), reader(queue)];
    await Promise.all([lister.depth(), replayer.depth()]);
    const target = `m${N - 5}`;
    const listing = lister.list({}, { limit: 100_000 });
    await someoneReading(dlq);
    await replayer.replayOne(target);
    const listed = await listing;
    assert.equal(listed.length, N, `the list saw ${listed.length} of ${N}`);
    const copies = await broker.drain(queue);
    assert.deepEqual(
      copies.map((m) => m.properties.messageId),
      [target],
    );
    const left = (await broker.drain(dlq)).map((m) => m.properties.messageId);
    assert.deepEqual(
      left,
      ids(N).filter((id) => id !== target),
    );
  });

  it('replay({}) during a concurrent list() replays every dead letter exactly once', async () => {
    const queue = await queueWithDeadLetters('list-replay-all');
    const dlq = deadLetterQueueName(queue);
    const [lister, replayer] = [reader(queue), reader(queue)];
    await Promise.all([lister.depth(), replayer.depth()]);
    const listing = lister.list({}, { limit: 100_000 });
    await someoneReading(dlq);
    const result = await replayer.replay({});
    assert.deepEqual(result, { done: N, failed: [] });
    // The list ran wholly before or wholly after the replay: all of them, or none.
    const listed = await listing;
    assert.ok(listed.length === N || listed.length === 0, `the list saw ${listed.length} of ${N}`);
    assert.equal(await broker.depth(dlq), 0);
    const copies = (await broker.drain(queue)).map((m) => m.properties.messageId);
    assert.deepEqual(copies, ids(N));
  });

  it('readers that cannot see each other in-process (as in two processes) take turns at the broker', async () => {
    const queue = await queueWithDeadLetters('processes');
    const dlq = deadLetterQueueName(queue);
    // Another spelling of the broker's URL is another broker as far as this process knows, so
    // only the broker's lock keeps these apart, as it does for readers in separate processes.
    const [a, b, c] = ['', '?heartbeat=31', '?heartbeat=32'].map((query) =>
      reader(queue, { amqpUrl: `${AMQP_URL}${query}` }),
    );
    await Promise.all([a!.depth(), b!.depth(), c!.depth()]);
    const target = `m${N - 5}`;
    const listingA = a!.list({}, { limit: 100_000 });
    await someoneReading(dlq);
    const [listedC] = await Promise.all([c!.list({}, { limit: 100_000 }), b!.replayOne(target)]);
    const listedA = await listingA;
    assert.equal(listedA.length, N, `the first list saw ${listedA.length} of ${N}`);
    // The second list ran wholly before or wholly after the replay.
    assert.ok(
      listedC.length === N || listedC.length === N - 1,
      `the second list saw ${listedC.length} of ${N}`,
    );
    assert.deepEqual(
      (await broker.drain(queue)).map((m) => m.properties.messageId),
      [target],
    );
    assert.equal(await broker.depth(dlq), N - 1);
  });

  it('a reader in another process holding the queue makes a scan wait for it, or fail typed', async () => {
    const queue = await queueWithDeadLetters('foreign', 20);
    const dlq = deadLetterQueueName(queue);
    // Another process's scan, as this version makes it: an exclusive consumer holding the
    // queue's messages unacked.
    const foreign = await model.createChannel();
    foreign.on('error', () => {});
    const held: Message[] = [];
    await foreign.consume(dlq, (m) => m && held.push(m), { exclusive: true, noAck: false });
    await waitFor('the other reader to hold every dead letter', () => held.length === 20);

    const impatient = reader(queue, { busyTimeoutMs: 200 });
    await assert.rejects(impatient.list(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'dead-letter-queue-busy');
      assert.match(error.message, new RegExp(dlq.replace(/\./g, '\\.')));
      return true;
    });
    await assert.rejects(impatient.replayOne('m3'), { code: 'dead-letter-queue-busy' });

    const patient = reader(queue);
    const listing = patient.list();
    const showing = patient.show('m3');
    await foreign.close();
    assert.deepEqual(
      (await listing).map((d) => d.messageId),
      ids(20),
    );
    assert.equal((await showing).messageId, 'm3');
    assert.deepEqual(
      (await broker.drain(dlq)).map((m) => m.properties.messageId),
      ids(20),
    );
  });

  it('a dead-letter queue deleted while a scan reads it: a typed dead-letter-queue-not-found', async () => {
    const queue = await queueWithDeadLetters('deleted-mid-read');
    const dlq = deadLetterQueueName(queue);
    const listing = reader(queue).list({}, { limit: 100_000 });
    listing.catch(() => {});
    await someoneReading(dlq);
    await broker.channel.deleteQueue(dlq);
    await assert.rejects(listing, (error: Error & { code?: string }) => {
      assert.equal(error.code, 'dead-letter-queue-not-found', String(error));
      assert.match(error.message, new RegExp(dlq.replace(/\./g, '\\.')));
      // A wrong vhost in the URL looks the same: the message names the one it looked in.
      assert.match(
        error.message,
        /does not exist in virtual host "\/".*virtual host of the AMQP URL/,
      );
      return true;
    });
  });
});
