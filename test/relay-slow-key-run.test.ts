import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stallTimeoutMs } from '../src/relay/stall-timeout.js';
import { AMQP_URL } from './support/env.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { payloadOf } from './support/test-broker.js';
import { waitFor } from './support/wait-for.js';

/**
 * A key's run goes one row per confirm, and its claim transaction stays open (idle) until the
 * last of them: on a slow broker a long run outlasted the stall bound that the transaction sets
 * Postgres' idle timeout to, Postgres ended the session after the broker had confirmed, and the
 * whole batch went out again, every time.
 */
describe('OutboxRelay: a key run slower than the stall bound', () => {
  const bed = relayTestBed('relay_slow_run');

  it('stops sending a run in time to delete what the broker confirmed', async () => {
    const latencyMs = 300;
    const heartbeatSeconds = 2;
    const publishTimeoutMs = 2 * heartbeatSeconds * 1000;
    const total = 70;
    // One confirm per round trip: the run takes longer than the stall bound.
    assert.ok(total * latencyMs > stallTimeoutMs(publishTimeoutMs));
    const exchange = await bed.broker.exchange('slow-run', 'direct');
    const queue = await bed.broker.queue('slow-run', exchange, 'k');
    await writeMessages(
      bed.t,
      numberedMessages(exchange, total, 'slow').map((m) => ({ ...m, orderingKey: 'one' })),
    );
    const proxy = await TcpProxy.start('127.0.0.1', Number(new URL(AMQP_URL).port || 5672));
    try {
      proxy.latency(latencyMs, 'toClient');
      const relay = await bed.start({
        amqpUrl: proxy.url(AMQP_URL),
        heartbeatSeconds,
        publishTimeoutMs,
        concurrency: 1,
      });
      await waitFor(
        'the outbox drained',
        async () => (await bed.t.count()) === 0,
        total * latencyMs + 15_000,
      );
      await relay.stop();
      const payloads = (await bed.broker.drain(queue)).map(
        (m) => (payloadOf(m) as { i: number }).i,
      );
      assert.deepEqual(
        payloads,
        Array.from({ length: total }, (_, i) => i),
        'each row once, in order',
      );
      assert.equal(relay.stats().published, total);
      assert.equal(relay.stats().errors, 0, 'batches that failed');
    } finally {
      await proxy.close();
    }
  });
});
