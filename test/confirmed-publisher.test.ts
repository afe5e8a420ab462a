import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import * as amqp from 'amqplib';
import { closeConnection } from '../src/amqp/close-within.js';
import {
  ConfirmedPublisher,
  type ConfirmResult,
  NACKS_BEFORE_NEW_CHANNEL,
} from '../src/amqp/confirmed-publisher.js';
import { ConfirmedPublisherSlot } from '../src/amqp/confirmed-publisher-slot.js';
import { PUBLISH_TAG_HEADER } from '../src/protocol/message-headers.js';
import type { OutboxRow } from '../src/relay/outbox-row.js';
import { publishBatch } from '../src/relay/publish-batch.js';
import { AMQP_URL } from './support/env.js';
import { ScriptedConfirmChannel } from './support/scripted-confirm-channel.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';

const send = (
  publisher: ConfirmedPublisher,
  exchange: string,
  routingKey: string,
  messageId: string,
  content = Buffer.from(messageId),
): Promise<ConfirmResult> =>
  new Promise((resolve) =>
    publisher.send(exchange, routingKey, content, { messageId, persistent: true }, resolve),
  );

/** An outbox row as the relay claims it, for the exchange and routing key of `exchange`. */
const outboxRow = (id: string, exchange = 'amq.direct'): OutboxRow => ({
  id,
  message_id: id,
  exchange,
  routing_key: 'bound',
  payload: Buffer.from(id),
  content_type: 'text/plain',
  headers: null,
  ordering_key: null,
  correlation_id: null,
  causation_id: null,
  created_at_s: 0,
  attempts: 0,
  rejections: 0,
});

describe('ConfirmedPublisher: the answers the broker sends too rarely to test by chance', () => {
  it('a return, then one combined ack for it and an earlier publish with the same message id', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const routable = send(publisher, 'x', 'bound', 'same-id');
    const unroutable = send(publisher, 'x', 'nowhere', 'same-id');
    channel.returnMessage(1);
    channel.ackMultiple(1);
    assert.deepEqual(await routable, { kind: 'confirmed' });
    assert.deepEqual(await unroutable, { kind: 'returned', replyCode: 312, replyText: 'NO_ROUTE' });
  });

  it('a return found by its message id when the publish went without the tag', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const routable = send(publisher, 'x', 'bound', 'id-a');
    const unroutable = send(publisher, 'x', 'nowhere', 'id-b');
    // Unique message ids in flight: no tag header for the broker to carry.
    for (const s of channel.sent) assert.equal(s.options.headers?.[PUBLISH_TAG_HEADER], undefined);
    channel.returnMessage(1);
    channel.ackMultiple(1);
    assert.deepEqual(await routable, { kind: 'confirmed' });
    assert.deepEqual(await unroutable, { kind: 'returned', replyCode: 312, replyText: 'NO_ROUTE' });
  });

  it('the tag header only where a message id is in flight already, or a tag came with the message', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const tagOf = (i: number) => channel.sent[i]!.options.headers?.[PUBLISH_TAG_HEADER];
    const first = send(publisher, 'x', 'bound', 'same');
    void send(publisher, 'x', 'bound', 'same');
    assert.equal(tagOf(0), undefined);
    assert.equal(typeof tagOf(1), 'number', 'a second publish of an id in flight went untagged');
    channel.ackMultiple(0);
    await first;
    // The untagged one was answered: the id may go untagged again.
    void send(publisher, 'x', 'bound', 'same');
    assert.equal(tagOf(2), undefined);
    // A replayed copy may carry the tag of its first publish: it gets one of its own.
    publisher.send(
      'x',
      'k',
      Buffer.alloc(0),
      { messageId: 'r', headers: { [PUBLISH_TAG_HEADER]: 1 } },
      () => {},
    );
    assert.equal(tagOf(3), 4);
    // Without a message id, a return can only be told by the tag.
    publisher.send('x', 'k', Buffer.alloc(0), {}, () => {});
    assert.equal(tagOf(4), 5);
    publisher.send('x', 'k', Buffer.alloc(0), { messageId: '' }, () => {});
    assert.equal(tagOf(5), 6);
  });

  it('each publish carries a tag of its own, next to the caller headers', () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    for (let i = 0; i < 3; i += 1) {
      publisher.send('x', 'k', Buffer.alloc(0), { headers: { 'x-app': 'a' } }, () => {});
    }
    const tags = channel.sent.map((s) => s.options.headers?.[PUBLISH_TAG_HEADER]);
    assert.equal(new Set(tags).size, 3);
    for (const s of channel.sent) assert.equal(s.options.headers?.['x-app'], 'a');
    assert.ok(channel.sent.every((s) => s.options.mandatory === true));
  });
});

describe('ConfirmedPublisher on a real broker', () => {
  let broker: TestBroker;
  let exchange: string;
  let queue: string;
  const connections: ChannelModel[] = [];
  before(async () => {
    broker = await TestBroker.open();
    exchange = await broker.exchange('x', 'direct');
    queue = await broker.queue('q', exchange, 'bound');
  });
  afterEach(async () => {
    for (const c of connections.splice(0)) await closeConnection(c);
    await broker.channel.purgeQueue(queue);
  });
  after(() => broker.close());

  async function open(url = AMQP_URL) {
    const connection = await amqp.connect(url);
    connection.on('error', () => {});
    connections.push(connection);
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => {});
    const answers: number[] = [];
    return {
      connection,
      answers,
      publisher: new ConfirmedPublisher(channel, (s) => answers.push(s)),
    };
  }

  it('routed and returned publishes with repeated message ids each get their own answer', async () => {
    const { publisher, answers } = await open();
    const pairs = 1000;
    const results = await Promise.all(
      Array.from({ length: pairs * 2 }, (_, i) =>
        send(publisher, exchange, i % 2 === 0 ? 'bound' : 'nowhere', `pair-${i >> 1}`),
      ),
    );
    const wrong = results.filter((r, i) =>
      i % 2 === 0 ? r.kind !== 'confirmed' : r.kind !== 'returned',
    );
    assert.equal(wrong.length, 0, `${wrong.length} of ${pairs * 2} got another publish's answer`);
    assert.deepEqual(results[1], { kind: 'returned', replyCode: 312, replyText: 'NO_ROUTE' });
    assert.equal(answers.length, pairs * 2);
    assert.equal(await broker.waitForDepth(queue, pairs), pairs);
  });

  it('an untagged publish returned, the tagged one with its id routed, and the id reused', async () => {
    // The reverse of the pairs above: the return that needs the id match is the first one's,
    // and each id is free again (its first publish answered) while later ones are in flight.
    const { publisher } = await open();
    const rounds = 200;
    const results: Array<Promise<ConfirmResult>> = [];
    for (let r = 0; r < rounds; r += 1) {
      const id = `reuse-${r % 3}`;
      results.push(send(publisher, exchange, 'nowhere', id));
      results.push(send(publisher, exchange, 'bound', id));
      // Every other round, let the first answers come before the id is used again.
      if (r % 2 === 1) await results.at(-2);
    }
    const answers = await Promise.all(results);
    const wrong = answers.filter((a, i) => a.kind !== (i % 2 === 0 ? 'returned' : 'confirmed'));
    assert.equal(
      wrong.length,
      0,
      `${wrong.length} of ${answers.length} got another publish's answer`,
    );
    assert.equal(await broker.waitForDepth(queue, rounds), rounds);
  });

  it('routed and returned publishes with unique message ids, sent without the tag, each get their own answer', async () => {
    const { publisher } = await open();
    const results = await Promise.all(
      Array.from({ length: 2000 }, (_, i) =>
        send(publisher, exchange, i % 2 === 0 ? 'bound' : 'nowhere', `unique-${i}`),
      ),
    );
    const wrong = results.filter((r, i) =>
      i % 2 === 0 ? r.kind !== 'confirmed' : r.kind !== 'returned',
    );
    assert.equal(wrong.length, 0, `${wrong.length} of 2000 got another publish's answer`);
    const delivered = await broker.drain(queue);
    assert.equal(delivered.length, 1000);
    for (const m of delivered) assert.equal(m.properties.headers?.[PUBLISH_TAG_HEADER], undefined);
  });

  it(`a slot replaces a channel after ${NACKS_BEFORE_NEW_CHANNEL} nacks in a row`, async () => {
    // The consumer's retry copies and the dead-letter replay publish through a slot: a channel
    // stuck on a quorum queue's old leader nacks every publish, a new one does not.
    const full = await broker.queue('slot-full', exchange, 'slot-full', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    const { connection } = await open();
    const slot = new ConfirmedPublisherSlot();
    const first = await slot.open(connection);
    for (let i = 1; i < NACKS_BEFORE_NEW_CHANNEL; i += 1) {
      const publisher = await slot.open(connection);
      assert.equal(publisher, first, `replaced after ${i - 1} nacks`);
      assert.deepEqual(await send(publisher, exchange, 'slot-full', `s${i}`), { kind: 'nacked' });
    }
    assert.equal(await slot.open(connection), first, 'replaced before enough nacks');
    assert.deepEqual(await send(first, exchange, 'slot-full', 'last'), { kind: 'nacked' });
    const second = await slot.open(connection);
    assert.notEqual(second, first, 'the worn-out channel was kept');
    assert.equal(first.isOpen, false, 'the worn-out channel was left open');
    assert.deepEqual(await send(second, exchange, 'bound', 'after'), { kind: 'confirmed' });
    await slot.close();
    await broker.channel.deleteQueue(full);
  });

  it('a nack, counted until the next ack', async () => {
    const full = await broker.queue('full', exchange, 'full', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    const { publisher } = await open();
    assert.deepEqual(await send(publisher, exchange, 'full', 'n1'), { kind: 'nacked' });
    assert.deepEqual(await send(publisher, exchange, 'full', 'n2'), { kind: 'nacked' });
    assert.equal(publisher.nackedInARow, 2);
    assert.deepEqual(await send(publisher, exchange, 'bound', 'n3'), { kind: 'confirmed' });
    assert.equal(publisher.nackedInARow, 0, 'an ack did not end the run of nacks');
    await broker.channel.deleteQueue(full);
  });

  it('stays worn out after enough nacks in a row, whatever comes after', async () => {
    // A lane reads it when a batch settles; acks of its next batch may have come in by then.
    const full = await broker.queue('worn', exchange, 'worn', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    const { publisher } = await open();
    for (let i = 0; i < NACKS_BEFORE_NEW_CHANNEL; i += 1) {
      assert.equal(publisher.wornOut, false, `worn out after ${i} nacks`);
      assert.deepEqual(await send(publisher, exchange, 'worn', `w${i}`), { kind: 'nacked' });
    }
    assert.deepEqual(await send(publisher, exchange, 'bound', 'acked'), { kind: 'confirmed' });
    assert.equal(publisher.nackedInARow, 0);
    assert.equal(publisher.wornOut, true, 'an ack after the nacks hid the worn-out channel');
    await broker.channel.deleteQueue(full);
  });

  it('a channel the broker closes mid-batch fails every pending publish with its code', async () => {
    const { publisher, answers } = await open();
    const pending = Array.from({ length: 50 }, (_, i) =>
      send(publisher, exchange, 'bound', `c${i}`),
    );
    // Publishing to a missing exchange makes the broker close the channel (404).
    const culprit = send(publisher, broker.name('missing'), 'k', 'culprit');
    const results = [...(await Promise.all(pending)), await culprit];
    assert.equal(publisher.isOpen, false);
    const closed = results.filter((r) => r.kind === 'channel-closed');
    assert.ok(closed.length >= 1, 'the culprit was not failed by the close');
    for (const r of closed) {
      assert.equal(r.kind === 'channel-closed' && r.replyCode, 404);
      // The broker closed the channel on a live connection: not a lost link.
      assert.equal(r.kind === 'channel-closed' && r.connectionLost, undefined);
    }
    for (const r of results) assert.ok(r.kind === 'confirmed' || r.kind === 'channel-closed');
    // Answers are timed only for what the broker answered, not for what the close failed.
    assert.equal(answers.length, results.filter((r) => r.kind === 'confirmed').length);
    assert.deepEqual(await send(publisher, exchange, 'bound', 'after'), {
      kind: 'not-sent',
      reason: 'channel error: '.concat(publisher.closedReason!.slice('channel error: '.length)),
      encodable: true,
      channelClosed: true,
    });
  });

  it('a closed channel says whether the publish was the only one awaiting an answer', async () => {
    // The relay keeps two batches on a lane's channel: a close may count against a message (and
    // park it, in the end) only when nothing else was in flight with it.
    const { publisher: lone } = await open();
    const alone = await send(lone, broker.name('missing'), 'k', 'alone');
    assert.equal(alone.kind, 'channel-closed');
    assert.equal(alone.kind === 'channel-closed' && alone.alone, true);

    const { publisher: shared } = await open();
    const culprit = send(shared, broker.name('missing'), 'k', 'culprit');
    // Written before the broker's close arrives; the broker drops it with the channel.
    const follower = send(shared, exchange, 'bound', 'follower');
    for (const r of await Promise.all([culprit, follower])) {
      assert.equal(r.kind, 'channel-closed');
      assert.equal(r.kind === 'channel-closed' && r.alone, false);
    }
  });

  it('a connection lost before the confirms: every publish channel-closed, none timed', async () => {
    const { publisher, answers, connection } = await open();
    const pending = Array.from({ length: 50 }, (_, i) =>
      send(publisher, exchange, 'bound', `l${i}`),
    );
    // The publishes are written; no confirm can have been read yet: cut the socket now.
    (connection.connection as unknown as { stream: { destroy(e: Error): void } }).stream.destroy(
      new Error('cut by the test'),
    );
    for (const r of await Promise.all(pending)) {
      assert.equal(r.kind, 'channel-closed');
      assert.equal(r.kind === 'channel-closed' && r.replyCode, undefined);
      assert.equal(r.kind === 'channel-closed' && r.connectionLost, true);
      // Nothing was confirmed on the channel: nothing shows it was making progress.
      assert.equal(r.kind === 'channel-closed' && r.afterConfirms, undefined);
    }
    assert.equal(answers.length, 0, 'a closed channel was timed as a broker answer');
  });

  it('a connection lost after confirms: the publishes in flight say so', async () => {
    const { publisher, connection } = await open();
    assert.deepEqual(await send(publisher, exchange, 'bound', 'first'), { kind: 'confirmed' });
    const pending = Array.from({ length: 50 }, (_, i) =>
      send(publisher, exchange, 'bound', `a${i}`),
    );
    (connection.connection as unknown as { stream: { destroy(e: Error): void } }).stream.destroy(
      new Error('cut by the test'),
    );
    for (const r of await Promise.all(pending)) {
      assert.deepEqual(r, {
        kind: 'channel-closed',
        reason: 'channel closed',
        alone: false,
        connectionLost: true,
        afterConfirms: true,
      });
    }
  });

  it('a channel closed by outboxkit is not a lost connection', async () => {
    const { publisher } = await open();
    assert.deepEqual(await send(publisher, exchange, 'bound', 'first'), { kind: 'confirmed' });
    const pending = Array.from({ length: 20 }, (_, i) =>
      send(publisher, exchange, 'bound', `o${i}`),
    );
    await publisher.close();
    const closed = (await Promise.all(pending)).filter((r) => r.kind === 'channel-closed');
    assert.ok(closed.length > 0, 'the close failed no publish');
    for (const r of closed) {
      assert.equal(r.reason, 'closed by outboxkit');
      assert.equal(r.connectionLost, undefined);
    }
  });

  it('a publish while its connection closes is not sent, for want of a channel', async () => {
    // The relay's stop closes the connection: a row published then goes back untouched
    // (released), not counted as a failed attempt and delayed (transient).
    const { connection, publisher } = await open();
    const closing = connection.close();
    const result = await send(publisher, exchange, 'bound', 'late');
    const outcomes = await publishBatch(publisher, [{ row: outboxRow('late-row') }], 5000);
    await closing;
    assert.deepEqual(result, {
      kind: 'not-sent',
      reason: 'Connection closing',
      encodable: true,
      channelClosed: true,
    });
    assert.deepEqual(outcomes, {
      outcomes: [{ kind: 'released', reason: 'not sent: Connection closing' }],
      unanswered: 0,
    });
  });

  it('no answer in time: a timeout, the publish still counted in flight', async () => {
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      const { publisher } = await open(proxy.url(AMQP_URL));
      proxy.drop('toClient');
      const result = await publisher.publish(exchange, 'bound', Buffer.from('t'), {}, 300);
      assert.deepEqual(result, { kind: 'timeout', reason: 'no publisher confirm within 300 ms' });
      assert.equal(publisher.inFlight, 1);
    } finally {
      proxy.heal();
      await proxy.close();
    }
  });

  it('publish() returning false: the message is buffered and still answered', async () => {
    const { publisher } = await open();
    // amqplib's write buffer holds 1024 frames: written in one go, these overflow it.
    const total = 3000;
    const body = Buffer.alloc(100, 1);
    let refused = 0;
    const results: Array<Promise<ConfirmResult>> = [];
    for (let i = 0; i < total; i += 1) {
      results.push(
        new Promise((resolve) => {
          if (!publisher.send(exchange, 'bound', body, { messageId: `b${i}` }, resolve)) {
            refused += 1;
          }
        }),
      );
    }
    assert.ok(refused > 0, 'the write buffer never filled: the case was not tested');
    for (const r of await Promise.all(results)) assert.deepEqual(r, { kind: 'confirmed' });
    assert.equal(await broker.waitForDepth(queue, total), total);
  });

  it('a message amqplib cannot encode is not sent, and later answers stay in step', async () => {
    const { publisher } = await open();
    const first = send(publisher, exchange, 'bound', 'before');
    const bad = await send(publisher, exchange, 'bound', 'x'.repeat(300));
    assert.equal(bad.kind, 'not-sent');
    assert.equal(bad.kind === 'not-sent' && bad.encodable, false);
    const returned = send(publisher, exchange, 'nowhere', 'returned');
    const last = send(publisher, exchange, 'bound', 'after');
    assert.deepEqual(await first, { kind: 'confirmed' });
    assert.equal((await returned).kind, 'returned');
    assert.deepEqual(await last, { kind: 'confirmed' });
  });
});
