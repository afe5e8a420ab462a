import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { AMQP_URL } from './support/env.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/** Rows of one ordering key, `{ seq }` 0..n-1, in that order. */
const hotKeyRows = (
  exchange: string,
  n: number,
  routingKey = (_seq: number) => 'k',
  padBytes = 0,
) =>
  Array.from({ length: n }, (_, seq) => ({
    exchange,
    routingKey: routingKey(seq),
    payload: padBytes > 0 ? { seq, pad: 'x'.repeat(padBytes) } : { seq },
    messageId: `hot-${seq}`,
    orderingKey: 'hot',
  }));

/**
 * Checks a key's deliveries in arrival order: each message seen for the first time must be the
 * one after the highest seen so far (so nothing overtook anything), and copies may only repeat
 * what already came. Returns the first-time messages and the copies.
 */
function checkKeyOrder(seqs: readonly number[]): { distinct: number; copies: number } {
  let highest = -1;
  let copies = 0;
  const seen = new Set<number>();
  for (const seq of seqs) {
    if (seen.has(seq)) {
      copies += 1;
      continue;
    }
    assert.equal(seq, highest + 1, `seq ${seq} arrived first after ${highest}: out of order`);
    seen.add(seq);
    highest = seq;
  }
  return { distinct: seen.size, copies };
}

const seqOf = (message: amqp.Message) => (payloadOf(message) as { seq: number }).seq;

describe('relay: a hot key keeps its order when a message of its run fails', () => {
  const bed = relayTestBed('hot_key');
  const { start } = bed;

  it('moves a run of one key per batch, one message in flight at a time, in order', async () => {
    const exchange = await bed.broker.exchange('runs');
    const queue = await bed.broker.queue('runs', exchange);
    await writeMessages(bed.t, hotKeyRows(exchange, 600));
    const relay = await start({ batchSize: 100, keyRunSize: 100 });
    await waitFor('the outbox to drain', async () => (await bed.t.count()) === 0);
    const seqs = (await bed.broker.drain(queue)).map(seqOf);
    assert.deepEqual(checkKeyOrder(seqs), { distinct: 600, copies: 0 });
    // One row per key per batch would take 600 batches.
    assert.ok(relay.stats().batches <= 12, `${relay.stats().batches} batches for 6 runs`);
  });

  it('an unroutable message in the run is parked, and its successors follow in order', async () => {
    const exchange = await bed.broker.exchange('returned', 'direct');
    const queue = await bed.broker.queue('returned', exchange, 'k');
    await writeMessages(
      bed.t,
      hotKeyRows(exchange, 200, (seq) => (seq === 50 ? 'nowhere' : 'k')),
    );
    const relay = await start({ batchSize: 100, keyRunSize: 100 });
    await waitFor('the outbox to drain', async () => (await bed.t.count()) === 0);
    const seqs = (await bed.broker.drain(queue)).map(seqOf);
    assert.equal(await bed.t.count('outbox_parked'), 1);
    // Counted once the batch's COMMIT came back, a moment after other sessions see it.
    await waitFor('the park counted', () => relay.stats().parked >= 1);
    assert.equal(relay.stats().parked, 1);
    assert.ok(!seqs.includes(50));
    // The parked message leaves its key (docs/design.md): the rest came in order, once each.
    assert.deepEqual(
      seqs,
      Array.from({ length: 200 }, (_, i) => i).filter((i) => i !== 50),
    );
  });

  it('a nack (a full queue with reject-publish) stops the run; nothing overtakes the nacked message', async () => {
    const exchange = await bed.broker.exchange('nacked');
    const queue = await bed.broker.queue('nacked', exchange, '#', {
      arguments: { 'x-max-length': 5, 'x-overflow': 'reject-publish' },
    });
    const total = 300;
    // Large messages: a window of them takes long enough to cross the socket for the consumer's
    // acks to make room in the middle of it.
    await writeMessages(bed.t, hotKeyRows(exchange, total, undefined, 32 * 1024), 50);
    const relay = await start({ batchSize: 100, keyRunSize: 100 });
    // The queue fills up and the broker nacks the 6th message: the fault under test.
    await waitFor('a nack', () => relay.stats().infrastructureRetries >= 1);
    // A consumer now makes room a message at a time, so the broker takes a publish right after
    // nacking the one before, if it is ever sent: the order violation a window would make.
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createChannel();
      await channel.prefetch(1);
      const seqs: number[] = [];
      await channel.consume(queue, (message) => {
        if (!message) return;
        seqs.push(seqOf(message));
        channel.ack(message);
      });
      await waitFor(`${total} messages`, () => new Set(seqs).size >= total, 60_000);
      assert.deepEqual(checkKeyOrder(seqs), { distinct: total, copies: 0 });
    } finally {
      await connection.close();
    }
    assert.ok(relay.stats().infrastructureRetries >= 1);
    // The last messages can reach the consumer before the relay's DELETE of their rows commits.
    await waitFor('the outbox to drain', async () => (await bed.t.count()) === 0);
  });

  it('a connection lost mid-run: the rest of the run waits, and arrives in order', async () => {
    const exchange = await bed.broker.exchange('closed');
    const queue = await bed.broker.queue('closed', exchange);
    const total = 400;
    await writeMessages(bed.t, hotKeyRows(exchange, total));
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createChannel();
      const seqs: number[] = [];
      await channel.consume(
        queue,
        (message) => {
          if (!message) return;
          seqs.push(seqOf(message));
          // The relay's connection drops in the middle of a run, its channel with it.
          if (seqs.length === 150) proxy.resetAll();
        },
        { noAck: true },
      );
      const relay = await start({
        amqpUrl: proxy.url(AMQP_URL),
        batchSize: 100,
        keyRunSize: 100,
      });
      await waitFor(`${total} messages`, () => new Set(seqs).size >= total, 60_000);
      await waitFor('the outbox to drain', async () => (await bed.t.count()) === 0);
      const { distinct } = checkKeyOrder(seqs);
      assert.equal(distinct, total);
      assert.ok(proxy.accepted >= 2, 'the relay did not reconnect: no fault happened');
      // The cut reached the relay: a failed batch, or the run's row in flight went back (released
      // untouched after a lost connection, or retried).
      const { errors, infrastructureRetries, released } = relay.stats();
      assert.ok(errors + infrastructureRetries + released >= 1);
    } finally {
      await connection.close();
      await proxy.close();
    }
  });
});
