import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { waitFor } from './support/wait-for.js';

/**
 * A retry or dead-letter copy carries the handler's error (up to 2,000 characters) beside the
 * original's headers. On a broker frame of 4 KiB that pushed the copy over the frame: the broker
 * closed the connection at each copy, the message came back with its attempts uncounted, and it
 * failed again for ever (173 reconnects in 40 s in the probe, never dead-lettered).
 */
describe('idempotent consumer: copies on a small broker frame', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cframe');
  });
  afterEach(() => f.stopHosts());
  after(() => f.close());

  it('cuts the error text to fit, and dead-letters after the attempts', async () => {
    const name = f.name('framed');
    let calls = 0;
    const def = f.definition(
      'framed',
      async () => {
        calls += 1;
        throw new Error(`refused: ${'e'.repeat(1900)}`);
      },
      { retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 40 } } },
    );
    const url = new URL(AMQP_URL);
    url.searchParams.set('frameMax', '4096');
    const host = await f.host([def], { amqpUrl: url.toString() });
    // Fits a 4 KiB frame as it is published; not with the error added.
    await f.publish('k', { n: 1 }, { messageId: 'framed-1', headers: { note: 'n'.repeat(2000) } });
    const dlq = deadLetterQueueName(name);
    await f.waitForDepth(dlq, 1);
    const [dead] = await f.drain(dlq);
    const headers = dead!.properties.headers ?? {};
    assert.equal(headers.note, 'n'.repeat(2000));
    const error = headers[OUTBOXKIT_HEADERS.error] as string;
    assert.match(error, /^refused: e+…$/);
    assert.ok(error.length < 1900, `error kept at ${error.length} characters`);
    assert.equal(calls, 3);
    await waitFor('the dead letter counted', () => host.stats(name).deadLettered === 1);
  });

  // A consumer's channel takes the one channel a `channelMax` of 1 allows: copies sharing its
  // connection got none, and a failing message ran again and again past `maxAttempts`.
  it('copies get a channel under a channel_max of 1, and maxAttempts holds', async () => {
    const name = f.name('channels');
    let calls = 0;
    const def = f.definition(
      'channels',
      async () => {
        calls += 1;
        throw new Error('refused');
      },
      {
        routingKeys: ['channels'],
        retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 40 } },
      },
    );
    const url = new URL(AMQP_URL);
    url.searchParams.set('channelMax', '1');
    const host = await f.host([def], { amqpUrl: url.toString() });
    await f.publish('channels', { n: 1 }, { messageId: 'channels-1' });
    await f.waitForDepth(deadLetterQueueName(name), 1);
    assert.equal(calls, 3);
    // The broker holds the copy a moment before the host has its confirm and counts it.
    await waitFor('the dead letter counted', () => host.stats(name).deadLettered === 1);
  });
});
