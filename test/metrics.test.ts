import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { serveMetrics } from '../examples/metrics/metrics-server.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { renderPrometheus } from '../src/metrics/render-prometheus.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/** Parses exposition text into `name{labels}` → value, and checks HELP/TYPE come once per name. */
function parse(text: string): Map<string, number> {
  const values = new Map<string, number>();
  const typed = new Set<string>();
  for (const line of text.trimEnd().split('\n')) {
    const type = /^# TYPE (\S+) (counter|gauge)$/.exec(line);
    if (type) {
      assert.ok(!typed.has(type[1]!), `${type[1]} typed twice`);
      typed.add(type[1]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const sample = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    assert.ok(typed.has(sample[1]!), `${sample[1]} has no TYPE before it`);
    values.set(`${sample[1]}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return values;
}

describe('metrics', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  let relay: OutboxRelay;
  before(async () => {
    t = await testDatabase('metrics');
    broker = await TestBroker.open();
    relay = testRelay(t);
  });
  after(async () => {
    await relay.stop();
    await broker.close();
    await t.close();
  });

  it("renders the real relay's counts and the outbox gauges in Prometheus format", async () => {
    const routed = await broker.exchange('routed');
    const orphan = await broker.exchange('orphan');
    await broker.queue('sink', routed, '#');
    await writeMessages(t, [
      ...Array.from({ length: 7 }, (_, i) => ({
        exchange: routed,
        routingKey: 'r',
        payload: { i },
      })),
      { exchange: orphan, routingKey: 'nobody', payload: {} },
    ]);
    await relay.start();
    await waitFor('the outbox to drain', async () => (await t.count('outbox')) === 0);
    // A row written while the relay is stopped is pending, with an age.
    await relay.stop();
    await writeMessages(t, [{ exchange: routed, routingKey: 'r', payload: { late: true } }]);

    const host = {
      consumers: ['billing "eu"'],
      inFlight: 0,
      stats: () => ({ received: 3, handled: 2, duplicates: 1 }) as never,
    };
    const text = renderPrometheus(
      await collectMetrics({ relay, consumers: host, db: t.pool, schema: t.schema }),
    );
    const m = parse(text);
    assert.equal(m.get('outboxkit_relay_published_total'), relay.stats.published);
    assert.equal(relay.stats.published, 7);
    assert.equal(m.get('outboxkit_relay_parked_total'), 1);
    assert.equal(m.get(`outboxkit_outbox_parked{exchange="${orphan}"}`), 1);
    assert.equal(m.get(`outboxkit_outbox_pending{exchange="${routed}"}`), 1);
    assert.equal(m.get(`outboxkit_outbox_pending{exchange="${orphan}"}`), 0);
    assert.ok(m.get('outboxkit_outbox_oldest_pending_age_seconds')! >= 0);
    // Label values are escaped.
    assert.equal(m.get('outboxkit_consumer_duplicates_total{consumer="billing \\"eu\\""}'), 1);
    assert.match(text, /^# HELP outboxkit_relay_published_total Outbox rows confirmed/m);
  });

  it('the example serves them over HTTP on localhost', async () => {
    const server = await serveMetrics({ relay, db: t.pool, schema: t.schema }, 0);
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const response = await fetch(server.url);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
      const m = parse(await response.text());
      assert.equal(m.get('outboxkit_relay_published_total'), 7);
      assert.equal((await fetch(server.url.replace('/metrics', '/'))).status, 404);
    } finally {
      await server.close();
    }
  });
});
