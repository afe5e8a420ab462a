import assert from 'node:assert/strict';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { deadLetterQueueName, delayQueueName } from '../src/consumer/consumer-topology.js';
import { TopologyConflictError } from '../src/consumer/topology-conflict-error.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { StateError } from '../src/errors/state-error.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { silentLogger } from '../src/util/logger.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

describe('consumer host: topology and lifecycle', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('clife');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  it('declares an identical topology again without harm', async () => {
    const name = f.name('again');
    const def = f.definition('again', f.recordEffect, { routingKeys: ['again'] });
    const first = await f.host([def]);
    await first.stop();
    const second = await f.host([def]);
    await f.publish('again', { n: 1 }, { messageId: 'again-1' });
    await waitFor('handled by the second host', () => second.stats(name).handled === 1);
    assert.equal(first.stats(name).handled, 0);
  });

  it('fails start with a TopologyConflictError when the queue exists with other settings', async () => {
    const name = f.name('conflict');
    await f.channel.assertQueue(name, { durable: true, arguments: { 'x-queue-type': 'classic' } });
    const def = f.definition('conflict', f.recordEffect, { queueType: 'quorum' });
    const host = await f.host([def], {}, false);
    await assert.rejects(host.start(), (error: unknown) => {
      assert.ok(error instanceof TopologyConflictError);
      assert.equal(error.kind, 'queue');
      assert.equal(error.entity, name);
      assert.match(error.message, /inequivalent arg/);
      assert.match(error.message, /Make the consumer definition match/);
      return true;
    });
    assert.equal(host.isRunning, false);
  });

  it("names the consumer's queue and its queueType when the type changed", async () => {
    const name = f.name('retyped');
    // Declared as quorum with its delay queues, as a deployed consumer would have left them.
    const first = await f.host([f.definition('retyped', f.recordEffect, { queueType: 'quorum' })]);
    await first.stop();
    const def = f.definition('retyped', f.recordEffect, { queueType: 'classic' });
    const host = await f.host([def], {}, false);
    await assert.rejects(host.start(), (error: unknown) => {
      assert.ok(error instanceof TopologyConflictError);
      assert.equal(error.entity, name);
      assert.match(error.message, /x-queue-type/);
      assert.match(error.message, /Make the consumer definition \(its `queueType`\) match/);
      return true;
    });
  });

  it("names `ordered` when an unordered consumer's queue is made ordered", async () => {
    const name = f.name('reordered');
    const first = await f.host([
      f.definition('reordered', f.recordEffect, { queueType: 'classic' }),
    ]);
    await first.stop();
    const def = f.definition('reordered', f.recordEffect, { queueType: 'classic', ordered: true });
    const host = await f.host([def], {}, false);
    await assert.rejects(host.start(), (error: unknown) => {
      assert.ok(error instanceof TopologyConflictError);
      assert.equal(error.entity, name);
      assert.match(error.message, /Make the consumer definition \(its `ordered`, which makes/);
      return true;
    });
  });

  it('works on quorum queues, retries and dead letters included', async () => {
    const name = f.name('quorum');
    const calls: number[] = [];
    const def = f.definition(
      'quorum',
      async (payload: { fail: boolean }, ctx) => {
        calls.push(ctx.attempt);
        if (payload.fail || ctx.attempt === 1) throw new Error('not yet');
        await f.recordEffect(payload, ctx);
      },
      {
        routingKeys: ['quorum'],
        queueType: 'quorum',
        retry: { maxAttempts: 2, backoff: { initialMs: 30, maxMs: 30 } },
      },
    );
    const host = await f.host([def]);
    const info = await f.channel.checkQueue(delayQueueName(name, 30));
    assert.equal(info.queue, delayQueueName(name, 30));
    await f.publish('quorum', { fail: false }, { messageId: 'q-ok' });
    await f.publish('quorum', { fail: true }, { messageId: 'q-dead' });
    await waitFor('one handled, one dead', () => {
      const s = host.stats(name);
      return s.handled === 1 && s.deadLettered === 1;
    });
    const [dead] = await f.drain(deadLetterQueueName(name));
    assert.equal(dead?.properties.messageId, 'q-dead');
    assert.equal(dead?.properties.headers?.[OUTBOXKIT_HEADERS.attempts], 2);
    assert.deepEqual(
      (await f.effects()).filter((e) => e.consumer === name).map((e) => `${e.key}@${e.attempt}`),
      ['q-ok@2'],
    );
  });

  it('stops gracefully: running handlers commit and are acked, the rest goes back to the queue', async () => {
    const name = f.name('graceful');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let started = 0;
    const def = f.definition(
      'graceful',
      async (payload, ctx) => {
        started += 1;
        await gate;
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['graceful'], concurrency: 2, prefetch: 4 },
    );
    const host = await f.host([def]);
    await f.publishMany(
      Array.from({ length: 10 }, (_, i) => ({
        routingKey: 'graceful',
        content: { i },
        options: { messageId: `g${i}` },
      })),
    );
    await waitFor('two handlers running', () => started === 2);
    let stopped = false;
    const stopping = host.stop().then(() => {
      stopped = true;
    });
    // A second caller (a signal handler beside a framework hook) waits as long.
    let stoppedAgain = false;
    const stoppingAgain = host.stop().then(() => {
      stoppedAgain = true;
    });
    await waitFor(
      'the consumer to be cancelled',
      async () => (await f.channel.checkQueue(name)).consumerCount === 0,
    );
    assert.equal(stopped, false, 'stop() waits for running handlers');
    assert.equal(stoppedAgain, false, 'a second stop() waits for running handlers too');
    release();
    await Promise.all([stopping, stoppingAgain]);
    assert.equal(started, 2, 'nothing new started while stopping');
    assert.equal(host.stats(name).handled, 2);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(effects.length, 2);
    await waitFor('the rest back in the queue', async () => (await f.depth(name)) === 8);

    const next = await f.host([def]);
    await waitFor(
      'the rest handled',
      () => next.stats(name).handled + next.stats(name).duplicates === 8,
    );
    const all = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(all.length, 10);
    assert.equal(new Set(all.map((e) => e.key)).size, 10);
    assert.equal(next.stats(name).duplicates, 0, 'what was acked had committed, and only that');
  });

  it('at the stop deadline, handlers still running are rolled back and their messages go back uncounted', async () => {
    const name = f.name('deadline');
    let started = 0;
    let finished!: () => void;
    const done = new Promise<void>((resolve) => {
      finished = resolve;
    });
    let lateWrite: unknown;
    let slept = false;
    const def = f.definition(
      'deadline',
      async (payload, ctx) => {
        started += 1;
        // Ignores its signal, as a handler stuck in an HTTP call without one would.
        await new Promise((resolve) => setTimeout(resolve, 3000));
        slept = true;
        try {
          await f.recordEffect(payload, ctx);
        } catch (error) {
          lateWrite = error;
        } finally {
          finished();
        }
      },
      { routingKeys: ['deadline'], retry: { maxAttempts: 1 } },
    );
    const host = await f.host([def], { stopTimeoutMs: 300 });
    await f.publish('deadline', { n: 1 }, { messageId: 'deadline-1' });
    await waitFor('the handler running', () => started === 1);
    const stopping = performance.now();
    await host.stop();
    const took = performance.now() - stopping;
    assert.equal(slept, false, `stop() took ${Math.round(took)} ms, past the handler's end`);
    await done;
    // Nothing of the handler committed, and its late statement was refused.
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 0);
    assert.equal((lateWrite as { code?: string } | undefined)?.code, 'handler-stopped');
    // Back in the queue, not dead-lettered (one attempt allowed): the stop counts no attempt.
    await waitFor('the message back in the queue', async () => (await f.depth(name)) === 1);
    assert.equal(await f.depth(deadLetterQueueName(name)), 0);
    assert.equal(host.stats(name).deadLettered, 0);

    const next = await f.host([
      f.definition('deadline', f.recordEffect, { routingKeys: ['deadline'] }),
    ]);
    await waitFor('handled after the restart', () => next.stats(name).handled === 1);
    assert.equal((await f.effects()).filter((e) => e.consumer === name).length, 1);
  });

  it('fails start after startTimeoutMs when RabbitMQ cannot be reached, naming every node tried', async () => {
    // Ports nobody listens on: bind one, note it, close it.
    const deadPort = async () => {
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as net.AddressInfo;
      await new Promise((resolve) => server.close(resolve));
      return port;
    };
    const ports = [await deadPort(), await deadPort()];
    const host = await f.host(
      [f.definition('unreachable', f.recordEffect)],
      {
        amqpUrl: ports.map((port) => `amqp://guest:guest@127.0.0.1:${port}`),
        startTimeoutMs: 500,
      },
      false,
    );
    await assert.rejects(host.start(), (error: unknown) => {
      assert.ok(error instanceof OutboxkitError);
      assert.equal(error.code, 'consumer-start-timeout');
      // Says where it tried and what the broker's side answered: each node, not the last only.
      for (const port of ports) {
        assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}: [^;]*ECONNREFUSED`));
      }
      assert.doesNotMatch(error.message, /guest:guest/);
      return true;
    });
  });

  it('a stop() while start() waits for RabbitMQ ends the start at once, saying so', async () => {
    const port = await TcpProxy.freePort();
    const host = await f.host(
      [f.definition('stopped-starting', f.recordEffect)],
      { amqpUrl: `amqp://guest:guest@127.0.0.1:${port}`, startTimeoutMs: 60_000 },
      false,
    );
    const starting = host.start();
    const began = Date.now();
    await host.stop();
    await assert.rejects(starting, (error: unknown) => {
      assert.ok(error instanceof StateError, String(error));
      assert.match(error.message, /stopped while it was starting/);
      return true;
    });
    // Not after startTimeoutMs, with "RabbitMQ could not be reached".
    assert.ok(Date.now() - began < 10_000, `took ${Date.now() - began} ms`);
    assert.equal(host.isRunning, false);
  });

  it('rejects definitions it cannot run, naming the option', () => {
    const make = (overrides: object, options: object = {}) =>
      new ConsumerHost({
        db: f.t.db,
        amqpUrl: 'amqp://localhost',
        logger: silentLogger,
        consumers: [f.definition('cfg', f.recordEffect, overrides)],
        ...options,
      });
    const option = (fn: () => unknown, expected: string) =>
      assert.throws(fn, (error: unknown) => {
        assert.ok(error instanceof ConfigurationError);
        assert.equal(error.option, expected);
        return true;
      });
    const cfg = f.name('cfg');
    option(() => make({ ordered: true, batchSize: 10 }), `consumers[${cfg}].batchSize`);
    option(() => make({ concurrency: 8, prefetch: 4 }), `consumers[${cfg}].prefetch`);
    option(
      () => make({ exchangeType: 'direct', routingKeys: undefined }),
      `consumers[${cfg}].routingKeys`,
    );
    option(() => make({ timeoutMs: 40 * 60_000 }), `consumers[${cfg}].timeoutMs`);
    option(
      () =>
        make({
          ordered: true,
          retry: { maxAttempts: 20, backoff: { initialMs: 60_000, maxMs: 600_000 } },
        }),
      `consumers[${cfg}].retry`,
    );
    option(() => make({}, { retention: { retentionMs: 1000 } }), 'retention.retentionMs');
    option(
      () =>
        new ConsumerHost({
          db: f.t.db,
          amqpUrl: 'amqp://localhost',
          consumers: [f.definition('dup', f.recordEffect), f.definition('dup', f.recordEffect)],
        }),
      'consumers',
    );
  });
});
