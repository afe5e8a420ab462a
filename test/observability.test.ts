import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import {
  AggregationTemporality,
  DataPointType,
  InMemoryMetricExporter,
  MeterProvider,
  type MetricData,
  PeriodicExportingMetricReader,
} from '@opentelemetry/sdk-metrics';
import pino from 'pino';
import {
  AggregatorRegistry,
  collectDefaultMetrics,
  type OpenMetricsContentType,
  Registry,
} from 'prom-client';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { OUTBOXKIT_METRICS } from '../src/metrics/metric-catalogue.js';
import {
  type OpenTelemetryRegistration,
  registerOpenTelemetryMetrics,
} from '../src/metrics/register-opentelemetry-metrics.js';
import { type PinoLike, pinoOutboxLogger } from '../src/pino/pino-outbox-logger.js';
import {
  type PrometheusRegistry,
  registerPrometheusMetrics,
} from '../src/prometheus/register-prometheus-metrics.js';
import type { OutboxRelay } from '../src/relay/outbox-relay.js';
import type { PgQueryable } from '../src/sql/sql-executor.js';
import type { OtelMeter } from '../src/tracing/otel-api.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

const ROOT = join(fileURLToPath(import.meta.url), '../../..');

// Compile-time checks that the real packages fit the parts outboxkit declares for itself.
const _registry: PrometheusRegistry = new Registry();
const _pino: PinoLike = pino();
const _meter: OtelMeter = new MeterProvider().getMeter('fits');

/** The metric families of exposition text, with each series' value by `name{labels}`. */
function scrape(text: string): { families: Set<string>; values: Map<string, number> } {
  const families = new Set<string>();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) /.exec(line);
    if (type) families.add(type[1]!);
    const sample = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (sample) values.set(`${sample[1]}${sample[2] ?? ''}`, Number(sample[3]));
  }
  return { families, values };
}

/** Every `outboxkit_...` metric an expression queries, without a histogram series' suffix. */
function queried(expr: string): string[] {
  return [...expr.matchAll(/\boutboxkit_[a-z_]+/g)].map((m) =>
    m[0].replace(/_(bucket|sum|count)$/, ''),
  );
}

/**
 * The YAML the shipped rules use: nested maps and lists by indentation, `key: value`, `- `
 * items, single- or double-quoted or plain scalars, comments. Throws on anything else.
 */
export function parseYamlSubset(text: string): unknown {
  const lines = text
    .split('\n')
    .map((raw, i) => ({ raw, n: i + 1 }))
    .filter(({ raw }) => raw.trim() !== '' && !raw.trim().startsWith('#'))
    .map(({ raw, n }) => ({ indent: raw.length - raw.trimStart().length, text: raw.trim(), n }));
  let i = 0;
  const scalar = (s: string, n: number): unknown => {
    if (s.startsWith("'")) {
      assert.ok(s.endsWith("'") && s.length > 1, `line ${n}: unterminated quote`);
      return s.slice(1, -1).replaceAll("''", "'");
    }
    if (s.startsWith('"')) return JSON.parse(s);
    assert.ok(!/^[[{|>&*!%@`]/.test(s), `line ${n}: unsupported YAML: ${s}`);
    return s;
  };
  const block = (indent: number): unknown => {
    const first = lines[i]!;
    assert.equal(first.indent, indent, `line ${first.n}: unexpected indentation`);
    if (first.text.startsWith('- ')) {
      const list: unknown[] = [];
      while (i < lines.length && lines[i]!.indent === indent && lines[i]!.text.startsWith('- ')) {
        // An item's map continues two columns further in.
        const line = lines[i]!;
        lines[i] = { indent: indent + 2, text: line.text.slice(2), n: line.n };
        list.push(block(indent + 2));
      }
      return list;
    }
    const map: Record<string, unknown> = {};
    while (i < lines.length && lines[i]!.indent === indent) {
      const { text: t, n } = lines[i]!;
      const kv = /^([\w.-]+):(?: (.*))?$/.exec(t);
      assert.ok(kv, `line ${n}: not a key: ${t}`);
      assert.ok(!(kv[1]! in map), `line ${n}: ${kv[1]} twice`);
      i += 1;
      if (kv[2] !== undefined && kv[2] !== '') map[kv[1]!] = scalar(kv[2], n);
      else map[kv[1]!] = block(lines[i]!.indent);
    }
    return map;
  };
  const result = block(0);
  assert.equal(i, lines.length, `line ${lines[i]?.n}: unexpected indentation`);
  return result;
}

describe('observability with real services', () => {
  let f: ConsumerFixture;
  let relay: OutboxRelay;
  let host: ConsumerHost;
  let consumer: string;
  let otel: OpenTelemetryRegistration;
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  const logLines: Array<Record<string, unknown>> = [];

  before(async () => {
    f = await ConsumerFixture.open('obs');
    const definition = f.definition('observed', async (payload: unknown, ctx) => {
      if ((payload as { fail?: boolean }).fail) throw new Error('rejected by the handler');
      await f.recordEffect(payload, ctx);
    });
    consumer = definition.name;
    host = await f.host([definition]);
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) {
          if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    const logger = pino({ level: 'debug', base: { service: 'orders' } }, stream);
    relay = testRelay(f.t, { logger: pinoOutboxLogger(logger.child({ lane: 'relay' })) });
    await relay.start();
    // Before the traffic, so that the histograms see every observation.
    otel = registerOpenTelemetryMetrics({
      meter: meterProvider.getMeter('outboxkit'),
      relay,
      consumers: host,
      pool: f.t.pool,
      schema: f.t.schema,
    });
    const orphan = await f.broker.exchange('orphan');
    await writeMessages(f.t, [
      ...Array.from({ length: 5 }, (_, i) => ({
        exchange: f.name('events'),
        routingKey: 'r',
        payload: { i },
      })),
      { exchange: f.name('events'), routingKey: 'r', payload: { fail: true } },
      { exchange: orphan, routingKey: 'nobody', payload: {} },
    ]);
    await waitFor('the outbox drained', async () => (await f.t.count('outbox')) === 0, 30_000);
    await waitFor(
      'all handled',
      () => {
        const s = host.stats(consumer);
        return s.handled === 5 && s.deadLettered === 1;
      },
      30_000,
    );
  });
  after(async () => {
    otel?.unregister();
    await meterProvider.shutdown();
    await relay?.stop();
    await f.close();
  });

  it("registers outboxkit's metrics in the app's prom-client registry, read once per scrape", async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    let statements = 0;
    const pool: PgQueryable = {
      query: (text: string, params?: unknown[]) => {
        statements += 1;
        return f.t.pool.query(text, params);
      },
    };
    const registration = registerPrometheusMetrics(registry, {
      relay,
      consumers: host,
      pool,
      schema: f.t.schema,
    });
    assert.equal(registration.metrics.length, OUTBOXKIT_METRICS.length);
    const { families, values } = scrape(await registry.metrics());
    assert.equal(statements, 1, 'one statement per scrape, for all the outbox gauges');
    // The app's own metrics and outboxkit's, on one endpoint.
    assert.ok(families.has('process_cpu_user_seconds_total'));
    for (const d of OUTBOXKIT_METRICS) assert.ok(families.has(d.name), `${d.name} is served`);
    assert.equal(values.get('outboxkit_relay_published_total'), 6);
    assert.equal(values.get('outboxkit_relay_parked_total'), 1);
    assert.equal(values.get(`outboxkit_consumer_handled_total{consumer="${consumer}"}`), 5);
    assert.equal(values.get(`outboxkit_consumer_dead_lettered_total{consumer="${consumer}"}`), 1);
    assert.equal(values.get('outboxkit_relay_publish_seconds_count'), 7);
    assert.equal(values.get('outboxkit_relay_publish_seconds_bucket{le="+Inf"}'), 7);
    const parked = `outboxkit_outbox_parked_messages{exchange="${f.name('orphan')}"}`;
    assert.equal(values.get(parked), 1);
    assert.equal(values.get('outboxkit_relay_connected'), 1);
    assert.equal(values.get('outboxkit_consumer_connected'), 1);

    // Registering twice fails and leaves the registry as it was; unregister removes them all.
    assert.throws(
      () => registerPrometheusMetrics(registry, { relay }),
      (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'metrics-already-registered');
        assert.match(error.message, /outboxkit_relay_published_total/);
        assert.match(error.message, /unregister\(\)/);
        assert.match(
          String((error.cause as Error | undefined)?.message),
          /already been registered/,
        );
        return true;
      },
    );
    assert.ok(scrape(await registry.metrics()).families.has('outboxkit_relay_published_total'));
    registration.unregister();
    const rest = scrape(await registry.metrics()).families;
    assert.ok(![...rest].some((name) => name.startsWith('outboxkit_')));
    assert.ok(rest.has('process_cpu_user_seconds_total'));
  });

  it('serves an OpenMetrics registry counters named once with _total, and sums workers without doubling the outbox', async () => {
    // An OpenMetrics registry puts `_total` on a counter's samples itself: every counter came
    // out as `..._total_total` (found by a probe).
    const open = new Registry<OpenMetricsContentType>();
    open.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const registration = registerPrometheusMetrics(open, {
      relay,
      pool: f.t.pool,
      schema: f.t.schema,
    });
    const text = await open.metrics();
    registration.unregister();
    assert.match(text, /^# TYPE outboxkit_relay_published counter$/m);
    assert.match(text, /^outboxkit_relay_published_total 6$/m);
    assert.doesNotMatch(text, /_total_total/);

    // Two cluster workers reading the same outbox: its gauges are one figure, not two.
    const workers = [new Registry(), new Registry()];
    for (const r of workers)
      registerPrometheusMetrics(r, { relay, pool: f.t.pool, schema: f.t.schema });
    const merged = AggregatorRegistry.aggregate(
      await Promise.all(workers.map((r) => r.getMetricsAsJSON())),
    );
    const { values } = scrape(await merged.metrics());
    const parked = `outboxkit_outbox_parked_messages{exchange="${f.name('orphan')}"}`;
    assert.equal(values.get(parked), 1);
    // Each worker's own relay: these add up.
    assert.equal(values.get('outboxkit_relay_published_total'), 12);
  });

  it('says 0 connected while the relay cannot reach RabbitMQ (its error counter says nothing then)', async () => {
    const down = testRelay(f.t, { amqpUrl: 'amqp://guest:guest@127.0.0.1:1' });
    await down.start();
    try {
      const registry = new Registry();
      registerPrometheusMetrics(registry, { relay: down });
      const { values } = scrape(await registry.metrics());
      assert.equal(values.get('outboxkit_relay_connected'), 0);
      assert.equal(values.get('outboxkit_relay_errors_total'), 0);
    } finally {
      await down.stop();
    }
  });

  it('serves a prom-client scrape without the outbox gauges while the database stalls', async () => {
    const registry = new Registry();
    const registration = registerPrometheusMetrics(registry, {
      relay,
      pool: f.t.pool,
      schema: f.t.schema,
    });
    const locker = await f.t.pool.connect();
    try {
      // The gauges' statement waits behind this lock, as behind a stalled database.
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${f.t.schema}".outbox_parked IN ACCESS EXCLUSIVE MODE`);
      const began = Date.now();
      const { families, values } = scrape(await registry.metrics());
      const ms = Date.now() - began;
      assert.ok(ms < 6_000, `the scrape took ${ms} ms`);
      assert.equal(values.get('outboxkit_relay_published_total'), 6);
      assert.equal(values.has('outboxkit_outbox_oldest_pending_age_seconds'), false);
      assert.ok(families.has('outboxkit_relay_published_total'));
    } finally {
      await locker.query('ROLLBACK');
      locker.release();
    }
    await waitFor('the gauges back', async () =>
      scrape(await registry.metrics()).values.has('outboxkit_outbox_oldest_pending_age_seconds'),
    );
    registration.unregister();
  });

  it('reports the same figures through an OpenTelemetry meter', async () => {
    await reader.forceFlush();
    const metrics = new Map<string, MetricData>();
    for (const resource of exporter.getMetrics()) {
      for (const scope of resource.scopeMetrics) {
        for (const m of scope.metrics) metrics.set(m.descriptor.name, m);
      }
    }
    assert.deepEqual([...metrics.keys()].sort(), OUTBOXKIT_METRICS.map((d) => d.otelName).sort());
    const value = (name: string, attributes: Record<string, string> = {}) =>
      metrics
        .get(name)!
        .dataPoints.find((p) => JSON.stringify(p.attributes) === JSON.stringify(attributes))?.value;
    const published = metrics.get('outboxkit.relay.published')!;
    assert.equal(published.dataPointType, DataPointType.SUM);
    assert.equal(published.descriptor.unit, '{message}');
    assert.equal(value('outboxkit.relay.published'), 6);
    assert.equal(value('outboxkit.consumer.handled', { consumer }), 5);
    assert.equal(value('outboxkit.outbox.parked_messages', { exchange: f.name('orphan') }), 1);
    const confirm = metrics.get('outboxkit.relay.publish_seconds')!;
    assert.equal(confirm.dataPointType, DataPointType.HISTOGRAM);
    assert.equal(confirm.descriptor.unit, 's');
    const histogram = confirm.dataPoints[0]!.value as {
      count: number;
      buckets: { boundaries: number[] };
    };
    assert.equal(histogram.count, 7);
    assert.equal(histogram.buckets.boundaries[0], 0.001);
    const handler = value('outboxkit.consumer.handler_seconds', { consumer }) as { count: number };
    assert.ok(handler.count >= 6, `every handler attempt timed: ${handler.count}`);
  });

  it('ships a dashboard and alert rules whose every metric a real scrape has, through prom-client and through OpenTelemetry', async () => {
    const registry = new Registry();
    registerPrometheusMetrics(registry, {
      relay,
      consumers: host,
      pool: f.t.pool,
      schema: f.t.schema,
    });
    const { families } = scrape(await registry.metrics());
    // The same metrics through OpenTelemetry, as its Prometheus exporter serves them.
    await reader.forceFlush();
    const otelFamilies = scrape(
      new PrometheusSerializer().serialize(exporter.getMetrics().at(-1)!),
    ).families;

    const dashboard = JSON.parse(
      readFileSync(join(ROOT, 'ops/grafana/outboxkit.json'), 'utf8'),
    ) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    const rules = parseYamlSubset(
      readFileSync(join(ROOT, 'ops/prometheus/outboxkit-rules.yml'), 'utf8'),
    ) as { groups: Array<{ name: string; rules: Array<Record<string, unknown>> }> };

    const exprs = [
      ...dashboard.panels.flatMap((p) => p.targets.map((t) => ({ where: p.title, expr: t.expr }))),
      ...rules.groups.flatMap((g) =>
        g.rules.map((r) => {
          assert.equal(typeof r.alert, 'string');
          assert.equal(typeof r.expr, 'string', `${String(r.alert)} has an expr`);
          assert.equal(typeof (r.annotations as { summary?: unknown }).summary, 'string');
          return { where: String(r.alert), expr: r.expr as string };
        }),
      ),
    ];
    const used = new Set<string>();
    for (const { where, expr } of exprs) {
      const names = queried(expr);
      assert.ok(names.length > 0, `${where} queries an outboxkit metric`);
      for (const name of names) {
        assert.ok(families.has(name), `${where}: ${name} is not in a scrape`);
        assert.ok(
          otelFamilies.has(name),
          `${where}: ${name} is not in what OpenTelemetry's Prometheus exporter serves`,
        );
        used.add(name);
      }
    }
    // The dashboard covers what the issue asks for.
    for (const wanted of [
      'outboxkit_outbox_pending_messages',
      'outboxkit_outbox_oldest_pending_age_seconds',
      'outboxkit_relay_published_total',
      'outboxkit_relay_publish_seconds',
      'outboxkit_outbox_parked_messages',
      'outboxkit_consumer_handled_total',
      'outboxkit_consumer_retried_total',
      'outboxkit_consumer_dead_lettered_total',
      'outboxkit_consumer_handler_seconds',
      'outboxkit_relay_connected',
      'outboxkit_consumer_connected',
    ]) {
      assert.ok(used.has(wanted), `${wanted} is shown or alerted on`);
    }
  });

  it("writes the relay's logs into the app's pino logger, with its fields", () => {
    const parked = logLines.find((l) => l.msg === 'outbox rows parked');
    assert.ok(parked, 'the parked row was logged');
    assert.equal(parked.level, 40);
    assert.equal(parked.service, 'orders', "the app's base fields");
    assert.equal(parked.lane, 'relay', "the child logger's bindings");
    assert.equal(parked.component, 'outboxkit');
    assert.equal(parked.count, 1, "outboxkit's context as fields");
    assert.match(String(parked.reason), /unroutable/);
  });

  it('parses the YAML subset, and refuses what it does not know', () => {
    assert.deepEqual(parseYamlSubset('a:\n  - b: \'x: y\'\n    c: 2\n  - d: "q"\n'), {
      a: [{ b: 'x: y', c: '2' }, { d: 'q' }],
    });
    assert.throws(() => parseYamlSubset('a: |\n  text\n'), /unsupported/);
  });
});
