import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { serveMetrics } from '../examples/metrics/metrics-server.js';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { renderPrometheus } from '../src/metrics/render-prometheus.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/**
 * Parses exposition text into `name{labels}` → value, and checks HELP/TYPE come once per
 * metric, a histogram's `_bucket`, `_sum` and `_count` series under their metric's TYPE.
 */
function parse(text: string): Map<string, number> {
  const values = new Map<string, number>();
  const typed = new Map<string, string>();
  for (const line of text.trimEnd().split('\n')) {
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      assert.ok(!typed.has(type[1]!), `${type[1]} typed twice`);
      typed.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const sample = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    const name = sample[1]!;
    const family = /^(.+)_(bucket|sum|count)$/.exec(name)?.[1];
    const ok = typed.has(name) || (family !== undefined && typed.get(family) === 'histogram');
    assert.ok(ok, `${name} has no TYPE before it`);
    values.set(`${name}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return values;
}

/** The `_bucket` values of a histogram series in order, checking they are cumulative. */
function buckets(m: Map<string, number>, name: string, labels = ''): number[] {
  const counts = [...m]
    .filter(([key]) => key.startsWith(`${name}_bucket{${labels}`))
    .map(([, value]) => value);
  assert.ok(counts.length > 1, `${name} has buckets`);
  for (let i = 1; i < counts.length; i += 1) assert.ok(counts[i]! >= counts[i - 1]!);
  const suffix = labels === '' ? '' : `{${labels.replace(/,$/, '')}}`;
  assert.equal(counts.at(-1), m.get(`${name}_count${suffix}`), '+Inf bucket is the count');
  return counts;
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
      await collectMetrics({ relay, consumers: host, pool: t.pool, schema: t.schema }),
    );
    const m = parse(text);
    assert.equal(m.get('outboxkit_relay_published_total'), relay.stats().published);
    assert.equal(relay.stats().published, 7);
    assert.equal(m.get('outboxkit_relay_parked_total'), 1);
    assert.equal(m.get(`outboxkit_outbox_parked_messages{exchange="${orphan}"}`), 1);
    assert.equal(m.get(`outboxkit_outbox_pending_messages{exchange="${routed}"}`), 1);
    assert.equal(m.get(`outboxkit_outbox_pending_messages{exchange="${orphan}"}`), 0);
    assert.ok(m.get('outboxkit_outbox_oldest_pending_age_seconds')! >= 0);
    // Label values are escaped.
    assert.equal(m.get('outboxkit_consumer_duplicates_total{consumer="billing \\"eu\\""}'), 1);
    assert.match(text, /^# HELP outboxkit_relay_published_total Outbox rows confirmed/m);
    // Every row got an answer of the broker: 7 acks and 1 return, each timed.
    buckets(m, 'outboxkit_relay_publish_seconds');
    assert.equal(m.get('outboxkit_relay_publish_seconds_count'), 8);
    assert.ok(m.get('outboxkit_relay_publish_seconds_sum')! > 0);
  });

  it('the example serves them over HTTP on localhost', async () => {
    const server = await serveMetrics({ relay, pool: t.pool, schema: t.schema }, 0);
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

describe('latency histograms after real traffic', () => {
  let f: ConsumerFixture;
  let relay: OutboxRelay;
  before(async () => {
    f = await ConsumerFixture.open('metlat');
  });
  after(async () => {
    await relay?.stop();
    await f.close();
  });

  it('times each publish confirm and each handler attempt', async () => {
    const name = f.name('timed');
    let calls = 0;
    const handler = async (payload: unknown, ctx: ConsumeContext) => {
      calls += 1;
      // One failed attempt: failures are timed too.
      if (calls === 1) throw new Error('first attempt fails');
      await f.recordEffect(payload, ctx);
    };
    const host = await f.host([f.definition('timed', handler)]);
    relay = testRelay(f.t);
    await relay.start();
    await writeMessages(
      f.t,
      Array.from({ length: 6 }, (_, i) => ({
        exchange: f.name('events'),
        routingKey: 'r',
        payload: { i },
      })),
    );
    await waitFor('all handled', () => host.stats(name).handled === 6, 30_000);

    const m = parse(renderPrometheus(await collectMetrics({ relay, consumers: host })));
    // Retry copies go through the consumer's own publisher, not the relay's.
    assert.equal(m.get('outboxkit_relay_publish_seconds_count'), 6);
    buckets(m, 'outboxkit_relay_publish_seconds');
    const label = `consumer="${name}"`;
    assert.equal(m.get(`outboxkit_consumer_handler_seconds_count{${label}}`), 7);
    buckets(m, 'outboxkit_consumer_handler_seconds', `${label},`);
    const sum = m.get(`outboxkit_consumer_handler_seconds_sum{${label}}`)!;
    assert.ok(sum > 0 && sum < 30, `plausible handler time: ${sum} s`);
    assert.equal(host.handlerSeconds(name).count, 7);
  });
});
