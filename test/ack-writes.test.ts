// Acks leave the consumer's socket together: one system call for the acks of a turn of the
// event loop, not one each, and never held back from a busy socket.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import * as amqp from 'amqplib';
import { type CorkableSocket, socketOf } from '../src/amqp/socket-cork.js';
import { type ReceivedDelivery, receivedDelivery } from '../src/consumer/received-delivery.js';
import { ack, requeue } from '../src/consumer/settle-delivery.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/** Counts the socket's writes to the kernel: `_write` for one chunk, `_writev` for several. */
function countWrites(socket: CorkableSocket) {
  const target = socket as unknown as {
    _write: (...args: unknown[]) => unknown;
    _writev: (chunks: unknown[], ...rest: unknown[]) => unknown;
  };
  const counts = { calls: 0, chunks: 0 };
  const write = target._write;
  const writev = target._writev;
  target._write = function (this: unknown, ...args: unknown[]) {
    counts.calls += 1;
    counts.chunks += 1;
    return write.apply(this, args);
  };
  target._writev = function (this: unknown, chunks: unknown[], ...rest: unknown[]) {
    counts.calls += 1;
    counts.chunks += chunks.length;
    return writev.call(this, chunks, ...rest);
  };
  return {
    counts,
    restore() {
      target._write = write;
      target._writev = writev;
    },
  };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('acks and the socket', () => {
  let broker: TestBroker;
  let model: ChannelModel;
  let channel: Channel;

  before(async () => {
    broker = await TestBroker.open();
    model = await amqp.connect(AMQP_URL);
    model.on('error', () => {});
  });

  after(async () => {
    await model.close().catch(() => {});
    await broker.close();
  });

  /** `count` deliveries of a new queue, unacked, on a channel of their own. */
  async function deliveries(suffix: string, count: number) {
    const queue = await broker.queue(suffix);
    for (let i = 0; i < count; i += 1) broker.channel.sendToQueue(queue, Buffer.from(`${i}`));
    channel = await model.createChannel();
    channel.on('error', () => {});
    await channel.prefetch(count);
    const messages: ConsumeMessage[] = [];
    const { consumerTag } = await channel.consume(queue, (message) => {
      if (message) messages.push(message);
    });
    await waitFor(`${count} deliveries`, () => messages.length === count);
    const handle = { channel, model, open: true, consumerTags: [consumerTag] };
    const list: ReceivedDelivery[] = messages.map((m) => receivedDelivery(m, handle, false));
    const socket = socketOf(channel);
    assert.ok(socket, 'amqplib has a socket that corks');
    return { queue, list, socket, messages };
  }

  const corkedCount = (socket: CorkableSocket) =>
    (socket as unknown as { writableCorked: number }).writableCorked;

  it('the acks of one turn leave in one write, and the broker takes every one', async () => {
    const { queue, list, socket } = await deliveries('one-turn', 30);
    const writes = countWrites(socket);
    try {
      for (const delivery of list) ack(delivery);
      await waitFor('the acks written', () => writes.counts.chunks >= 30);
      assert.deepEqual(writes.counts, { calls: 1, chunks: 30 });
      await waitFor('the socket uncorked', () => corkedCount(socket) === 0);
    } finally {
      writes.restore();
    }
    // Unacked deliveries would go back to the queue when their channel closes.
    await channel.close();
    assert.equal(await broker.depth(queue), 0);
  });

  it('a socket acked on at every turn is written at every turn or two, not held corked', async () => {
    const { queue, list, socket } = await deliveries('every-turn', 20);
    const writes = countWrites(socket);
    const writtenBefore: number[] = [];
    try {
      for (const delivery of list) {
        writtenBefore.push(writes.counts.chunks);
        ack(delivery);
        await nextTurn();
      }
      await waitFor('every ack written', () => writes.counts.chunks >= 20);
      assert.equal(writes.counts.chunks, 20);
    } finally {
      writes.restore();
    }
    // Each ack is on the wire at most two turns after it was given.
    for (const [i, written] of writtenBefore.entries()) {
      assert.ok(written >= i - 2, `before ack ${i + 1}, ${written} acks had been written`);
    }
    await channel.close();
    assert.equal(await broker.depth(queue), 0);
  });

  it('the requeues of one turn leave in one write, and every message is back in the queue', async () => {
    const { list, socket, messages } = await deliveries('requeue', 12);
    const writes = countWrites(socket);
    try {
      requeue(list, { requeued: 0 });
      await waitFor('the nacks written', () => writes.counts.chunks >= 12);
      assert.deepEqual(writes.counts, { calls: 1, chunks: 12 });
      await waitFor('the socket uncorked', () => corkedCount(socket) === 0);
    } finally {
      writes.restore();
    }
    // Back in the queue, and delivered again to the consumer still there.
    await waitFor('all 12 delivered again', () => messages.length === 24);
    assert.ok(messages.slice(12).every((m) => m.fields.redelivered));
    await channel.close();
  });
});
