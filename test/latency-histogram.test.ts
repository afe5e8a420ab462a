import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { DEFAULT_LATENCY_BUCKETS, LatencyHistogram } from '../src/metrics/latency-histogram.js';
import { renderPrometheus } from '../src/metrics/render-prometheus.js';

describe('LatencyHistogram', () => {
  it('counts into cumulative buckets whose bounds are inclusive', () => {
    const h = new LatencyHistogram([0.01, 0.1, 1]);
    for (const s of [0.005, 0.01, 0.02, 0.1, 0.5, 3]) h.observe(s);
    assert.deepEqual(h.buckets(), [
      { le: 0.01, count: 2 },
      { le: 0.1, count: 4 },
      { le: 1, count: 5 },
      { le: Number.POSITIVE_INFINITY, count: 6 },
    ]);
    assert.equal(h.count, 6);
    assert.ok(Math.abs(h.sum - 3.635) < 1e-9);
    assert.deepEqual(JSON.parse(JSON.stringify(h)), { count: 6, sum: h.sum });
  });

  it('ignores negative and non-finite durations', () => {
    const h = new LatencyHistogram([1]);
    for (const s of [-0.001, Number.NaN, Number.POSITIVE_INFINITY]) h.observe(s);
    h.observe(0);
    assert.equal(h.count, 1);
    assert.deepEqual(
      h.buckets().map((b) => b.count),
      [1, 1],
    );
  });

  it('uses the default latency bounds and rejects unordered ones', () => {
    assert.deepEqual(new LatencyHistogram().bounds, DEFAULT_LATENCY_BUCKETS);
    assert.equal(new LatencyHistogram().buckets().length, DEFAULT_LATENCY_BUCKETS.length + 1);
    assert.throws(() => new LatencyHistogram([0.1, 0.1]), ConfigurationError);
    assert.throws(() => new LatencyHistogram([1, Number.POSITIVE_INFINITY]), ConfigurationError);
  });

  it('renders as a Prometheus histogram: one TYPE, buckets with le, then sum and count', async () => {
    const publish = new LatencyHistogram([0.005, 0.05]);
    publish.observe(0.002);
    publish.observe(0.2);
    const handlerA = new LatencyHistogram([0.5]);
    handlerA.observe(0.25);
    const handlerB = new LatencyHistogram([0.5]);
    const relay = {
      stats: () => ({
        published: 2,
        parked: 0,
        retried: 0,
        infrastructureRetries: 0,
        deferred: 0,
        released: 0,
        batches: 1,
        errors: 0,
        publishSeconds: publish,
      }),
    };
    const consumers = {
      consumers: ['a', 'b'],
      stats: () => ({ received: 1 }) as never,
      handlerSeconds: (c: string) => (c === 'a' ? handlerA : handlerB),
    };
    const text = renderPrometheus(await collectMetrics({ relay, consumers }));
    const section = (name: string) =>
      text
        .split('\n')
        .filter((l) => l.includes(`${name}_`) || l.endsWith(` ${name} histogram`))
        .filter((l) => !l.startsWith('# HELP'));
    assert.deepEqual(section('outboxkit_relay_publish_seconds'), [
      '# TYPE outboxkit_relay_publish_seconds histogram',
      'outboxkit_relay_publish_seconds_bucket{le="0.005"} 1',
      'outboxkit_relay_publish_seconds_bucket{le="0.05"} 1',
      'outboxkit_relay_publish_seconds_bucket{le="+Inf"} 2',
      'outboxkit_relay_publish_seconds_sum 0.202',
      'outboxkit_relay_publish_seconds_count 2',
    ]);
    assert.deepEqual(section('outboxkit_consumer_handler_seconds'), [
      '# TYPE outboxkit_consumer_handler_seconds histogram',
      'outboxkit_consumer_handler_seconds_bucket{consumer="a",le="0.5"} 1',
      'outboxkit_consumer_handler_seconds_bucket{consumer="a",le="+Inf"} 1',
      'outboxkit_consumer_handler_seconds_sum{consumer="a"} 0.25',
      'outboxkit_consumer_handler_seconds_count{consumer="a"} 1',
      'outboxkit_consumer_handler_seconds_bucket{consumer="b",le="0.5"} 0',
      'outboxkit_consumer_handler_seconds_bucket{consumer="b",le="+Inf"} 0',
      'outboxkit_consumer_handler_seconds_sum{consumer="b"} 0',
      'outboxkit_consumer_handler_seconds_count{consumer="b"} 0',
    ]);
    assert.equal(text.match(/^# HELP outboxkit_consumer_handler_seconds /gm)?.length, 1);
  });
});
