import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { QueueDeadLetters } from '../src/dashboard/queue-dead-letters.js';
import { AMQP_URL } from './support/env.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';

// Long enough for a first view through the proxy on a loaded machine (1 s was not, once).
const ANSWER_TIMEOUT_MS = 3000;

describe("the dashboard's dead-letter view when RabbitMQ stops answering", () => {
  let broker: TestBroker;
  let proxy: TcpProxy;
  let queue: string;
  let deadLetters: QueueDeadLetters;

  before(async () => {
    broker = await TestBroker.open();
    queue = broker.name('orders');
    await broker.queue(deadLetterQueueName(queue).slice(broker.prefix.length + 1));
    for (const id of ['m1', 'm2']) {
      broker.channel.sendToQueue(deadLetterQueueName(queue), Buffer.from('{}'), { messageId: id });
    }
    await broker.waitForDepth(deadLetterQueueName(queue), 2);
    const url = new URL(AMQP_URL);
    proxy = await TcpProxy.start(url.hostname, Number(url.port || 5672));
    deadLetters = new QueueDeadLetters(proxy.url(AMQP_URL), queue, 10, ANSWER_TIMEOUT_MS);
  });
  after(async () => {
    await deadLetters?.close();
    await proxy?.close();
    await broker?.close();
  });

  it('gives up on a silent link with a typed error, and the next view reconnects', async () => {
    const before = await deadLetters.view();
    assert.equal(before.depth, 2);
    assert.deepEqual(
      before.messages.map((m) => m.messageId),
      ['m1', 'm2'],
    );

    // The open connection goes silent for good (no FIN, no RST); new connections work.
    proxy.blackholeOpen();
    const started = Date.now();
    await assert.rejects(deadLetters.view(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'rabbitmq-no-answer');
      assert.match(
        error.message,
        new RegExp(`${deadLetterQueueName(queue)} within ${ANSWER_TIMEOUT_MS} ms`),
      );
      return true;
    });
    // The answer timeout, then at most the close bound (2 s) for the dropped connection.
    const waited = Date.now() - started;
    assert.ok(waited < ANSWER_TIMEOUT_MS + 2000 + 2500, `gave up after ${waited} ms`);

    // Not stuck behind the silent operation: a fresh connection, the same dead letters.
    const again = await deadLetters.view();
    assert.equal(again.depth, 2);
    assert.deepEqual(
      again.messages.map((m) => m.messageId),
      ['m1', 'm2'],
    );
    assert.equal(proxy.accepted, 2, 'the second view did not connect afresh');
  });
});
