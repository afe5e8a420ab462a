import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import {
  delayQueueName,
  LEGACY_DELAY_QUEUE_WARNING,
  retryDueQueueName,
} from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import { clearPolicy, setQueuePolicy } from './support/broker-policy.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { recordingLogger } from './support/recording-logger.js';
import { waitFor } from './support/wait-for.js';

/** The retry delay of these tests: long enough to fill the consumer's queue meanwhile. */
const DELAY_MS = 1500;

/** Retries after `DELAY_MS`, up to `maxAttempts` attempts. */
const delayed = (maxAttempts: number) => ({
  maxAttempts,
  backoff: { initialMs: DELAY_MS, maxMs: DELAY_MS },
});

describe('retries come back through a queue of their own', () => {
  let f: ConsumerFixture;
  const policies: string[] = [];
  let afterEachRelease: (() => void) | undefined;
  before(async () => {
    f = await ConsumerFixture.open('rdue');
  });
  afterEach(async () => {
    afterEachRelease?.();
    afterEachRelease = undefined;
    await f.stopHosts();
    for (const p of policies.splice(0)) await clearPolicy(p);
    f.assertPoolIdle();
  });
  after(() => f.close());

  /** Records its effect, then fails the first attempt (rolling the effect back). */
  const failFirstAttempt = async (payload: unknown, ctx: ConsumeContext) => {
    await f.recordEffect(payload, ctx);
    if (ctx.attempt === 1) throw new Error('first attempt fails');
  };

  /** The attempts whose effects committed, of one consumer. */
  const committedAttempts = async (consumer: string) =>
    (await f.effects()).filter((e) => e.consumer === consumer).map((e) => e.attempt);

  for (const queueType of ['classic', 'quorum'] as const) {
    it(`a retry due while the consumer's ${queueType} queue is full (max-length, reject-publish) is handled once, not lost`, async () => {
      const name = f.name(`full-${queueType}`);
      const exchange = f.name(`full-${queueType}-events`);
      // An operator's length limit on the consumer's queue, set before it is declared: room for
      // one ready message.
      policies.push(`${name}-limit`);
      await setQueuePolicy(`${name}-limit`, name, { 'max-length': 1, overflow: 'reject-publish' });

      let releaseBlocker!: () => void;
      const blocker = new Promise<void>((resolve) => {
        releaseBlocker = resolve;
      });
      let blockerStarted = false;
      const attempts = new Map<string, number[]>();
      const def = f.definition(
        `full-${queueType}`,
        async (payload: { id: string }, ctx: ConsumeContext) => {
          attempts.set(payload.id, [...(attempts.get(payload.id) ?? []), ctx.attempt]);
          if (payload.id === 'blocker') {
            blockerStarted = true;
            await blocker;
          }
          await f.recordEffect(payload, ctx);
          if (payload.id === 'flaky' && ctx.attempt === 1) throw new Error('first attempt fails');
        },
        {
          exchange,
          queueType,
          concurrency: 1,
          prefetch: 1,
          retry: delayed(3),
        },
      );
      const host = await f.host([def]);
      const delayQueue = delayQueueName(name, DELAY_MS);
      // A failed assertion must not leave the host's stop waiting on the blocked handler.
      afterEachRelease = releaseBlocker;

      await f.publish('x', { id: 'flaky' }, { messageId: 'flaky' }, exchange);
      await waitFor('the retry copy in its delay queue', () => host.stats(name).retried === 1);
      // The one handler slot taken, and one more message ready: the queue is full.
      await f.publish('x', { id: 'blocker' }, { messageId: 'blocker' }, exchange);
      await waitFor('the blocking handler to start', () => blockerStarted);
      await f.publish('x', { id: 'filler' }, { messageId: 'filler' }, exchange);
      assert.equal(await f.depth(name), 1, 'the consumer queue holds its one ready message');

      // The delay passes while the queue is full: the copy leaves its delay queue.
      await waitFor(
        'the delay queue to let the copy go',
        async () => (await f.depth(delayQueue)) === 0,
        20_000,
      );
      assert.equal(await f.depth(name), 1, 'the consumer queue stayed full all along');
      releaseBlocker();

      await waitFor('every message handled', () => host.stats(name).handled === 3, 20_000);
      const effects = (await f.effects()).filter((e) => e.consumer === name);
      const committed = effects.map((e) => e.key).sort();
      assert.deepEqual(committed, ['blocker', 'filler', 'flaky'], 'each message committed once');
      assert.deepEqual(attempts.get('flaky'), [1, 2]);
      assert.equal(await f.depth(retryDueQueueName(name)), 0);
      assert.equal(host.stats(name).deadLettered, 0);
    });
  }

  it('a message whose retry copies the broker refuses is dead-lettered after maxAttempts runs, not retried for ever', async () => {
    const name = f.name('refused');
    const exchange = f.name('refused-events');
    // An operator's limit that takes nothing into the delay queue: every retry copy is nacked.
    const delayQueue = delayQueueName(name, DELAY_MS);
    policies.push(`${name}-refuse`);
    await setQueuePolicy(`${name}-refuse`, delayQueue, {
      'max-length': 0,
      overflow: 'reject-publish',
    });
    let calls = 0;
    const def = f.definition(
      'refused',
      async () => {
        calls += 1;
        throw new Error('always fails');
      },
      { exchange, retry: delayed(3) },
    );
    const host = await f.host([def]);
    await f.publish('x', { id: 1 }, { messageId: 'refused-1' }, exchange);
    // Before, the attempt count lived only in the refused copy: the message came back from its
    // own queue as attempt 1 each time, and the handler ran for as long as the test waited.
    await waitFor('the message dead-lettered', () => host.stats(name).deadLettered === 1, 20_000);
    assert.equal(calls, 3, 'the handler ran maxAttempts times');
    assert.equal(host.stats(name).retried, 0);
    const [dead] = await f.drain(`${name}.dlq`);
    assert.equal(dead?.properties.headers?.['x-outboxkit-attempts'], 3);
  });

  it('a dead letter the broker refuses is not logged as dead-lettered; the message waits in its queue', async () => {
    const name = f.name('dlq-refused');
    const exchange = f.name('dlq-refused-events');
    policies.push(`${name}-dlq-refuse`);
    await setQueuePolicy(`${name}-dlq-refuse`, `${name}.dlq`, {
      'max-length': 0,
      overflow: 'reject-publish',
    });
    const logger = recordingLogger();
    const def = f.definition(
      'dlq-refused',
      async () => {
        throw new PermanentError('never valid');
      },
      { exchange },
    );
    const host = await f.host([def], { logger });
    await f.publish('x', { id: 1 }, { messageId: 'dlq-refused-1' }, exchange);
    const refusals = () =>
      logger.lines.filter((l) => l.text.startsWith('could not move a message'));
    await waitFor('two refused dead letters', () => refusals().length >= 2);
    // It said "message dead-lettered" before each copy, taken or not (found by a probe).
    assert.deepEqual(
      logger.lines.filter((l) => l.text.startsWith('message dead-lettered')),
      [],
    );
    assert.equal(host.stats(name).deadLettered, 0);
  });

  it('a retry waiting when the consumer restarts without retries (maxAttempts: 1) still comes back', async () => {
    const name = f.name('fewer');
    const exchange = f.name('fewer-events');
    const withRetries = f.definition('fewer', failFirstAttempt, {
      exchange,
      retry: delayed(2),
    });
    const first = await f.host([withRetries]);
    await f.publish('x', { id: 1 }, { messageId: 'fewer-1' }, exchange);
    await waitFor('the retry copy in its delay queue', () => first.stats(name).retried === 1);
    await f.stopHosts();

    // The same consumer, now without retries: its delay queue is no longer its own to declare,
    // but the copy in it still comes back through the retry-due queue.
    const host = await f.host([{ ...withRetries, retry: { maxAttempts: 1 } }]);
    assert.ok(host.queues.includes(retryDueQueueName(name)), 'the retry-due queue is consumed');
    await waitFor('the retry handled', () => host.stats(name).handled === 1, 20_000);
    assert.deepEqual(await committedAttempts(name), [2]);
  });

  it('a delay queue deleted while the consumer runs is declared again by the first retry that finds it missing', async () => {
    const name = f.name('deleted');
    const exchange = f.name('deleted-events');
    let calls = 0;
    const def = f.definition(
      'deleted',
      async (payload: unknown, ctx: ConsumeContext) => {
        calls += 1;
        await failFirstAttempt(payload, ctx);
      },
      { exchange, retry: delayed(3) },
    );
    const host = await f.host([def]);
    const delayQueue = delayQueueName(name, DELAY_MS);
    // An operator's clean-up while the consumer runs.
    await f.channel.deleteQueue(delayQueue);

    await f.publish('x', { id: 1 }, { messageId: 'deleted-1' }, exchange);
    await waitFor('the retry handled', () => host.stats(name).handled === 1, 20_000);
    // The first copy came back (no such queue): the message went back to its queue once, and
    // ran again as attempt 2, the refused copy's attempt counted.
    assert.equal(calls, 2);
    assert.equal(host.stats(name).retried, 0);
    assert.ok(await f.queueInfo(delayQueue), 'the delay queue is there again');
    assert.deepEqual(await committedAttempts(name), [2]);
  });

  it('a delay queue an older version declared is kept, with a warning, and still retries', async () => {
    const name = f.name('legacy');
    const delayQueue = delayQueueName(name, DELAY_MS);
    // As an older outboxkit declared it: dead-lettering straight into the consumer's queue.
    await f.channel.assertQueue(delayQueue, {
      durable: true,
      arguments: {
        'x-queue-type': 'classic',
        'x-message-ttl': DELAY_MS,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': name,
      },
    });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const def = f.definition('legacy', failFirstAttempt, {
        exchange: f.name('legacy-events'),
        retry: delayed(3),
      });
      const host = await f.host([def]);
      await f.publish('x', { id: 1 }, { messageId: 'legacy-1' }, f.name('legacy-events'));
      await waitFor('the retry to succeed', () => host.stats(name).handled === 1, 20_000);
      await waitFor('the warning', () => warnings.length > 0);
      const warning = warnings.find(
        (w) => (w as Error & { code?: string }).code === LEGACY_DELAY_QUEUE_WARNING,
      );
      assert.ok(warning, 'a warning with its code');
      assert.match(
        warning.message,
        new RegExp(`Delay queue "${delayQueue.replace(/\./g, '\\.')}"`),
      );
      assert.match(warning.message, /wait until it is empty, delete it/);
      assert.deepEqual(await committedAttempts(name), [2]);
    } finally {
      process.off('warning', onWarning);
    }
  });
});
