import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ChannelModel, Message } from 'amqplib';
import * as amqp from 'amqplib';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import {
  deadLetterQueueName,
  declareTopology,
  topologyOf,
  topologyQueueNames,
} from '../src/consumer/consumer-topology.js';
import { QueueDeadLetters } from '../src/dashboard/queue-dead-letters.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { AMQP_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';

/** A consumer as an application declares it: the default queue type, quorum. */
function definitionOf(queue: string, exchange: string): ConsumerDefinition {
  return { name: queue, exchange, async handler() {} };
}

/** What a reader must leave exactly as it was: order, ids, bodies and every header. */
function snapshot(messages: readonly Message[]) {
  return messages.map((m) => ({
    messageId: m.properties.messageId as string,
    content: m.content.toString(),
    headers: m.properties.headers ?? {},
  }));
}

async function sendDeadLetters(broker: TestBroker, dlq: string, ids: readonly string[]) {
  for (const [i, id] of ids.entries()) {
    broker.channel.sendToQueue(dlq, Buffer.from(JSON.stringify({ n: i })), {
      messageId: id,
      persistent: true,
      contentType: 'application/json',
      headers: {
        [OUTBOXKIT_HEADERS.reason]: 'permanent-error',
        [OUTBOXKIT_HEADERS.error]: `boom ${i}`,
      },
    });
  }
  await broker.waitForDepth(dlq, ids.length);
}

describe('dead letters: reading a dead-letter queue has no effect on it', () => {
  let broker: TestBroker;
  let model: ChannelModel;
  /** Queues and exchanges the consumer's topology declared, deleted at the end. */
  const declared: string[] = [];
  const exchanges: string[] = [];
  before(async () => {
    broker = await TestBroker.open();
    model = await amqp.connect(AMQP_URL);
    model.on('error', () => {});
  });
  after(async () => {
    for (const q of declared) await broker.channel.deleteQueue(q).catch(() => {});
    for (const e of exchanges) await broker.channel.deleteExchange(e).catch(() => {});
    await model?.close().catch(() => {});
    await broker?.close();
  });

  it('50 reads (list, show, the dashboard view) leave the delivery count and the contents as they were', async () => {
    const exchange = broker.name('reads');
    exchanges.push(exchange);
    const queue = broker.name('reads.consumer');
    const dlq = deadLetterQueueName(queue);
    const topology = topologyOf(definitionOf(queue, exchange));
    declared.push(...topologyQueueNames(topology));
    await declareTopology(model, [topology]);
    await sendDeadLetters(broker, dlq, ['d-1', 'd-2', 'd-3']);

    const reader = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue });
    const view = new QueueDeadLetters(AMQP_URL, queue, 10);
    try {
      const first = await reader.list();
      for (let read = 1; read < 50; read += 1) {
        if (read % 10 === 0) {
          // The dashboard reads afresh when the depth changed: it cannot have here, so its
          // cached view must still be the first read's.
          assert.deepEqual(
            (await view.view()).messages.map((m) => m.messageId),
            ['d-1', 'd-2', 'd-3'],
          );
        } else if (read % 2 === 0) {
          assert.equal((await reader.show('d-3')).payload.toString(), '{"n":2}');
        } else {
          assert.deepEqual(await reader.list(), first, `read ${read} saw something else`);
        }
      }
      const last = await reader.list();
      assert.deepEqual(
        last.map((d) => d.headers['x-delivery-count']),
        first.map((d) => d.headers['x-delivery-count']),
        'reading raised the delivery count',
      );
    } finally {
      await view.close();
      await reader.close();
    }
    const left = snapshot(await broker.drain(dlq));
    assert.deepEqual(left, [
      {
        messageId: 'd-1',
        content: '{"n":0}',
        headers: { 'x-outboxkit-reason': 'permanent-error', 'x-outboxkit-error': 'boom 0' },
      },
      {
        messageId: 'd-2',
        content: '{"n":1}',
        headers: { 'x-outboxkit-reason': 'permanent-error', 'x-outboxkit-error': 'boom 1' },
      },
      {
        messageId: 'd-3',
        content: '{"n":2}',
        headers: { 'x-outboxkit-reason': 'permanent-error', 'x-outboxkit-error': 'boom 2' },
      },
    ]);
  });

  it('keeps a dead-letter queue an older version declared as a quorum queue, warns, and refuses to read it', async () => {
    const exchange = broker.name('legacy');
    exchanges.push(exchange);
    const queue = broker.name('legacy.consumer');
    const dlq = deadLetterQueueName(queue);
    // What outboxkit declared before: the DLQ of a quorum consumer was a quorum queue.
    await broker.queue(dlq.slice(broker.prefix.length + 1), undefined, '#', {
      arguments: { 'x-queue-type': 'quorum' },
    });
    await broker.queue(queue.slice(broker.prefix.length + 1), undefined, '#', {
      arguments: {
        'x-queue-type': 'quorum',
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': dlq,
      },
    });
    await sendDeadLetters(broker, dlq, ['old-1', 'old-2']);

    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      // The consumer still starts on it: an upgrade must not stop consumers.
      const topology = topologyOf(definitionOf(queue, exchange));
      declared.push(...topologyQueueNames(topology));
      await declareTopology(model, [topology]);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    const warning = warnings.find(
      (w) => (w as Error & { code?: string }).code === 'OUTBOXKIT_QUORUM_DEAD_LETTER_QUEUE',
    );
    assert.ok(warning, `no warning about ${dlq}: ${warnings.map((w) => w.message).join('; ')}`);
    assert.match(warning.message, new RegExp(dlq.replace(/\./g, '\\.')));

    const reader = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue });
    try {
      assert.equal(await reader.depth(), 2);
      await assert.rejects(reader.list(), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'dead-letter-queue-wears-out');
        assert.match(error.message, /docs\/operations\.md/);
        return true;
      });
      await assert.rejects(reader.show('old-1'), { code: 'dead-letter-queue-wears-out' });
    } finally {
      await reader.close();
    }
    // Refused before anything was taken: not even redelivered.
    const left = await broker.drain(dlq);
    assert.deepEqual(
      left.map((m) => [m.properties.messageId, m.fields.redelivered]),
      [
        ['old-1', false],
        ['old-2', false],
      ],
    );
  });
});
