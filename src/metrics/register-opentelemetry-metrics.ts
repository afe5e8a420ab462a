import { ConfigurationError } from '../errors/configuration-error.js';
import type { OtelAttributes, OtelMeter, OtelObservable } from '../tracing/otel-api.js';
import { otelApi } from '../tracing/otel-api.js';
import { TRACER_NAME } from '../tracing/process-span.js';
import { describeValue } from '../util/describe-value.js';
import {
  type CollectMetricsOptions,
  checkMetricsOptions,
  collectMetrics,
} from './collect-metrics.js';
import { DEFAULT_LATENCY_BUCKETS, type LatencyHistogram } from './latency-histogram.js';
import { type MetricDefinition, OUTBOXKIT_METRICS } from './metric-catalogue.js';

export interface OpenTelemetryMetricsOptions extends CollectMetricsOptions {
  /**
   * The meter to create the instruments on. Default: `metrics.getMeter('outboxkit')` of
   * `@opentelemetry/api`, i.e. the application's global `MeterProvider`.
   */
  readonly meter?: OtelMeter | undefined;
}

/** What `registerOpenTelemetryMetrics` returns. */
export interface OpenTelemetryRegistration {
  /** The instrument names created. */
  readonly instruments: readonly string[];
  /** Stops reporting: removes the callback and the histogram subscriptions. Idempotent. */
  unregister(): void;
}

/** A histogram that can tell of each observation: a `LatencyHistogram`. */
type Subscribable = Pick<LatencyHistogram, 'subscribe'>;

/**
 * Reports outboxkit's metrics through an OpenTelemetry meter: counters and gauges as
 * observable instruments read from the same sources as `collectMetrics` (one batch callback,
 * so one reading, and with `pool` one statement, per collection), and the two latency
 * histograms as histograms recorded as each duration is observed, with the same buckets.
 * Names are the Prometheus names with a dot after the component and counters without `_total`
 * (`outboxkit.relay.published`, unit `{message}`), so a Prometheus exporter turns them back into
 * the Prometheus names, which the shipped dashboard queries.
 *
 * @example
 * import { registerOpenTelemetryMetrics } from 'outboxkit/metrics';
 *
 * // After the application registered its MeterProvider:
 * const registration = registerOpenTelemetryMetrics({ relay, consumers: host, pool });
 * // at shutdown
 * registration.unregister();
 */
export function registerOpenTelemetryMetrics(
  options: OpenTelemetryMetricsOptions,
): OpenTelemetryRegistration {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigurationError(
      'options',
      'registerOpenTelemetryMetrics takes an object { meter?, relay?, consumers?, pool?, schema?, logger? }',
    );
  }
  const sources = withoutMeter(options);
  // A misspelt source fails here, not at every collection.
  checkMetricsOptions(sources, 'registerOpenTelemetryMetrics');
  const given = options.meter as Partial<Record<keyof OtelMeter, unknown>> | null | undefined;
  if (
    given !== undefined &&
    (given === null ||
      typeof given !== 'object' ||
      typeof given.createObservableCounter !== 'function' ||
      typeof given.createObservableGauge !== 'function' ||
      typeof given.createHistogram !== 'function')
  ) {
    throw new ConfigurationError(
      'meter',
      `must be an OpenTelemetry Meter (metrics.getMeter(name)), or left out for the global one; got ${describeValue(given)}`,
    );
  }
  const meter = options.meter ?? otelApi()?.metrics.getMeter(TRACER_NAME);
  if (!meter) {
    throw new ConfigurationError(
      'meter',
      'is needed when @opentelemetry/api is not installed: install it, or pass a meter',
    );
  }
  const present = new Set<MetricDefinition['source']>();
  if (options.relay) present.add('relay');
  if (options.consumers) present.add('consumers');
  if (options.pool) present.add('outbox');
  const definitions = OUTBOXKIT_METRICS.filter((d) => present.has(d.source));

  const observables = new Map<string, OtelObservable>();
  const unsubscribes: Array<() => void> = [];
  for (const d of definitions) {
    const description = { description: d.help, unit: d.unit };
    if (d.type === 'counter') {
      observables.set(d.name, meter.createObservableCounter(d.otelName, description));
    } else if (d.type === 'gauge') {
      observables.set(d.name, meter.createObservableGauge(d.otelName, description));
    } else {
      const histogram = meter.createHistogram(d.otelName, {
        ...description,
        advice: { explicitBucketBoundaries: [...DEFAULT_LATENCY_BUCKETS] },
      });
      for (const [source, attributes] of histogramSources(d, sources)) {
        unsubscribes.push(source.subscribe((seconds) => histogram.record(seconds, attributes)));
      }
    }
  }

  const callback = async (result: {
    observe(observable: OtelObservable, value: number, attributes?: OtelAttributes): void;
  }) => {
    for (const sample of await collectMetrics(sources)) {
      const observable = observables.get(sample.name);
      if (observable) result.observe(observable, sample.value, sample.labels);
    }
  };
  const list = [...observables.values()];
  if (list.length > 0) meter.addBatchObservableCallback(callback, list);

  let done = false;
  return Object.freeze({
    instruments: Object.freeze(definitions.map((d) => d.otelName)),
    unregister() {
      if (done) return;
      done = true;
      if (list.length > 0) meter.removeBatchObservableCallback(callback, list);
      for (const unsubscribe of unsubscribes) unsubscribe();
    },
  });
}

/** The live histograms behind a histogram metric, with their attributes. */
function histogramSources(
  d: MetricDefinition,
  options: CollectMetricsOptions,
): Array<[Subscribable, OtelAttributes]> {
  const subscribable = (h: unknown): h is Subscribable =>
    typeof (h as Partial<Subscribable> | undefined)?.subscribe === 'function';
  const found: Array<[Subscribable, OtelAttributes]> = [];
  if (d.source === 'relay') {
    const h = options.relay?.stats().publishSeconds;
    if (subscribable(h)) found.push([h, {}]);
  } else if (d.source === 'consumers' && options.consumers?.handlerSeconds) {
    for (const consumer of options.consumers.consumers) {
      const h = options.consumers.handlerSeconds(consumer);
      if (subscribable(h)) found.push([h, { consumer }]);
    }
  }
  return found;
}

function withoutMeter(options: OpenTelemetryMetricsOptions): CollectMetricsOptions {
  const { meter: _meter, ...sources } = options;
  return sources;
}
