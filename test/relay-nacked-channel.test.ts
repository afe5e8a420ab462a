import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NACKS_BEFORE_NEW_CHANNEL } from '../src/amqp/confirmed-publisher.js';
import { RETRIED_WARNING_INTERVAL_MS } from '../src/relay/outbox-relay.js';
import type { OutboxLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

const NEW_CHANNEL = 'confirm channel nacks every publish; opening a new one';

const RETRIED = 'outbox rows will be retried';

/** Counts the relay's log messages, and keeps the contexts of its retry lines. */
class CountingLogger implements OutboxLogger {
  readonly #counts = new Map<string, number>();
  readonly retried: Record<string, unknown>[] = [];
  count(message: string): number {
    return this.#counts.get(message) ?? 0;
  }
  #log = (message: string, context?: Record<string, unknown>) => {
    this.#counts.set(message, this.count(message) + 1);
    if (message === RETRIED) this.retried.push(context ?? {});
  };
  debug = this.#log;
  info = this.#log;
  warn = this.#log;
  error = this.#log;
}

// A channel that answers nothing but nacks may be stuck on a quorum queue's old leader (seen on
// a cluster, test/faults/cluster.test.ts): the relay replaces it. A full queue's reject-publish
// forces the nacks here; the relay cannot tell them apart, and needs not.
describe('OutboxRelay: a channel that keeps nacking', () => {
  const bed = relayTestBed('relay_nacked');

  /** A relay with `retryMs` between a row's attempts; one row nacked until `heal` runs. */
  async function nackedRow(name: string, retryMs: number) {
    const exchange = await bed.broker.exchange(name, 'direct');
    const full = await bed.broker.queue(`${name}-full`, exchange, 'k', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    await writeMessages(bed.t, [{ exchange, routingKey: 'k', payload: 'only' }]);
    const logger = new CountingLogger();
    const relay = await bed.start({
      logger,
      concurrency: 1,
      retry: { backoff: { initialMs: retryMs, maxMs: retryMs, jitter: 0 } },
    });
    const attempts = async () => {
      const { rows } = await bed.t.pool.query<{ attempts: number }>(
        `SELECT attempts FROM "${bed.t.schema}".outbox`,
      );
      return rows[0]?.attempts ?? 0;
    };
    const heal = async () => {
      const queue = await bed.broker.queue(name, exchange, 'k');
      await bed.broker.channel.deleteQueue(full);
      await waitFor('the row published', async () => (await bed.t.count()) === 0, 20_000);
      // A publish that reached both queues before the full one was deleted is nacked (one queue
      // rejected it) though the new queue kept a copy: the retry then delivers a second one.
      // At least once, as RabbitMQ confirms promise; only the content is the test's to check.
      const payloads = (await bed.broker.drain(queue)).map(payloadOf);
      assert.ok(payloads.length >= 1, 'nothing delivered');
      assert.deepEqual([...new Set(payloads)], ['only']);
    };
    return { relay, logger, attempts, heal };
  }

  it(`publishes on a new channel after ${NACKS_BEFORE_NEW_CHANNEL} nacks in a row`, async () => {
    const { relay, logger, attempts, heal } = await nackedRow('nack-churn', 10);
    await waitFor('a new channel after nacks', () => logger.count(NEW_CHANNEL) >= 2, 20_000);
    assert.ok((await attempts()) >= 2 * NACKS_BEFORE_NEW_CHANNEL, 'replaced before enough nacks');
    await heal();
    assert.equal(relay.stats().parked, 0);
  });

  it('replaces a worn-out channel without failing the batch still in flight on it', async () => {
    // A lane keeps two batches on its channel. The first, all nacked, wears the channel out while
    // the second (routable) waits for its acks: closing the channel then would fail those rows
    // (retried later, counted) though the broker was about to confirm them.
    const exchange = await bed.broker.exchange('worn-shared', 'direct');
    const full = await bed.broker.queue('worn-shared-full', exchange, 'full', {
      arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' },
    });
    const ok = await bed.broker.queue('worn-shared-ok', exchange, 'ok');
    await writeMessages(bed.t, [
      ...Array.from({ length: NACKS_BEFORE_NEW_CHANNEL }, (_, i) => ({
        exchange,
        routingKey: 'full',
        payload: { full: i },
      })),
      ...Array.from({ length: NACKS_BEFORE_NEW_CHANNEL }, (_, i) => ({
        exchange,
        routingKey: 'ok',
        payload: { ok: i },
      })),
    ]);
    // Answers come late, so the second batch is written before the first one's nacks are read.
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      proxy.latency(150, 'toClient');
      const logger = new CountingLogger();
      await bed.start({
        logger,
        amqpUrl: proxy.url(AMQP_URL),
        concurrency: 1,
        batchSize: NACKS_BEFORE_NEW_CHANNEL,
        retry: { backoff: { initialMs: 60_000, maxMs: 60_000, jitter: 0 } },
      });
      const okRows = async (where: string) => {
        const { rows } = await bed.t.pool.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM "${bed.t.schema}".outbox WHERE routing_key = 'ok' ${where}`,
        );
        return rows[0]!.n;
      };
      await waitFor(
        'the routable rows answered',
        async () => (await okRows('AND attempts = 0')) === 0,
        20_000,
      );
      assert.equal(logger.count(NEW_CHANNEL), 1, 'the channel did not wear out: nothing tested');
      assert.equal(await okRows(''), 0, 'routable rows failed by the close of a worn-out channel');
      assert.equal(
        await bed.broker.waitForDepth(ok, NACKS_BEFORE_NEW_CHANNEL),
        NACKS_BEFORE_NEW_CHANNEL,
      );
    } finally {
      await proxy.close();
      await bed.broker.channel.deleteQueue(full);
    }
  });

  it('logs the retries of a row nacked again and again once per interval, counts adding up', async () => {
    const began = performance.now();
    const { relay, logger, heal } = await nackedRow('nack-log', 10);
    await waitFor('the row nacked 30 times', () => relay.stats().retried >= 30, 20_000);
    // One line at the first retry; the next ones are summed until each interval is over.
    const intervals = Math.floor((performance.now() - began) / RETRIED_WARNING_INTERVAL_MS);
    const lines = logger.count(RETRIED);
    assert.ok(
      lines <= 1 + intervals,
      `${lines} lines for the retries of ${intervals + 1} interval(s)`,
    );
    assert.equal(logger.retried[0]!.count, 1);
    assert.match(String(logger.retried[0]!.reason), /nack/);
    await heal();
    await relay.stop();
    // The stop logs what was summed since: every retry is in a line's count, one batch each.
    const sum = (field: string) => logger.retried.reduce((n, c) => n + Number(c[field]), 0);
    assert.equal(sum('count'), relay.stats().retried);
    assert.equal(sum('batches'), relay.stats().retried);
  });

  it('keeps its channel through fewer nacks in a row', async () => {
    // The first attempt goes on the fresh lane's channel, the next ones on the retry lane's.
    const { logger, attempts, heal } = await nackedRow('nack-few', 300);
    await waitFor('the row nacked 4 times', async () => (await attempts()) >= 4, 20_000);
    await heal();
    assert.ok((await attempts()) < NACKS_BEFORE_NEW_CHANNEL);
    assert.equal(logger.count(NEW_CHANNEL), 0, 'a channel replaced after a few nacks');
  });
});
