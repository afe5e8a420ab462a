import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import {
  type CollectMetricsOptions,
  checkMetricsOptions,
  collectMetrics,
} from '../metrics/collect-metrics.js';
import { type MetricDefinition, OUTBOXKIT_METRICS } from '../metrics/metric-catalogue.js';
import type { MetricSample } from '../metrics/metric-sample.js';
import { errorMessage } from '../util/logger.js';

/**
 * The part of a prom-client `Registry` this uses, declared here so that outboxkit neither
 * imports prom-client nor needs it to type-check (kysely does the same for `pg`). A test checks
 * that the real `Registry` fits.
 */
export interface PrometheusRegistry {
  // biome-ignore lint/suspicious/noExplicitAny: prom-client types it as its own Metric class
  registerMetric(metric: any): void;
  removeSingleMetric(name: string): void;
}

/** What `registerPrometheusMetrics` returns: the names it registered, and how to undo it. */
export interface PrometheusRegistration {
  /** The metric names registered, one per family. */
  readonly metrics: readonly string[];
  /** Removes them from the registry. Idempotent. */
  unregister(): void;
}

/** A metric as prom-client's registry reads it: `get()` gives its current values. */
interface CollectedMetric {
  name: string;
  readonly help: string;
  readonly type: MetricDefinition['type'];
  readonly aggregator: Aggregator;
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: Aggregator;
    values: Array<{ labels: Record<string, string>; value: number; metricName?: string }>;
  }>;
  reset(): void;
}

/** How prom-client's `AggregatorRegistry` (cluster mode) merges the workers' values. */
type Aggregator = 'sum' | 'max';

/**
 * Registers outboxkit's metrics in the application's own prom-client registry, so that one
 * `/metrics` endpoint serves both. Each scrape reads the sources once (with `pool`, one
 * statement), whatever the number of metrics: the registry asks every metric at once, and they
 * share the reading. The outbox gauges are left out of a scrape (with a warning on stderr) when
 * the database does not answer within 3 s, so a stalled database does not fail the scrape.
 *
 * Only the metrics of the given sources are registered: `relay` for the relay's,
 * `consumers` for the consumers', `pool` for the outbox gauges.
 *
 * @example
 * import { Registry, collectDefaultMetrics } from 'prom-client';
 * import { registerPrometheusMetrics } from 'outboxkit/prometheus';
 *
 * const registry = new Registry();
 * collectDefaultMetrics({ register: registry });
 * const registration = registerPrometheusMetrics(registry, { relay, consumers: host, pool });
 * // GET /metrics: res.end(await registry.metrics());
 * registration.unregister(); // at shutdown
 */
export function registerPrometheusMetrics(
  registry: PrometheusRegistry,
  options: CollectMetricsOptions,
): PrometheusRegistration {
  const given = registry as Partial<PrometheusRegistry> | null | undefined;
  if (
    typeof given?.registerMetric !== 'function' ||
    typeof given.removeSingleMetric !== 'function'
  ) {
    throw new ConfigurationError(
      'registry',
      "must be a prom-client Registry (prom-client's `register`, or `new Registry()`)",
    );
  }
  checkMetricsOptions(options, 'registerPrometheusMetrics');
  const sources = new Set<MetricDefinition['source']>();
  if (options.relay) sources.add('relay');
  if (options.consumers) sources.add('consumers');
  if (options.pool) sources.add('outbox');
  const definitions = OUTBOXKIT_METRICS.filter((d) => sources.has(d.source));

  let reading: Promise<Map<string, MetricSample[]>> | undefined;
  const read = () => {
    reading ??= collectMetrics(options)
      .then(byFamily)
      .finally(() => {
        reading = undefined;
      });
    return reading;
  };

  const registered: string[] = [];
  let registering: string | undefined;
  try {
    for (const d of definitions) {
      registering = d.name;
      // The outbox gauges are one database's figures, read alike by every worker: summed, two
      // workers would show twice the backlog. The relay's and consumers' are each worker's own.
      const aggregator: Aggregator = d.source === 'outbox' ? 'max' : 'sum';
      const collected: CollectedMetric = {
        name: d.name,
        help: d.help,
        type: d.type,
        aggregator,
        async get() {
          const samples = (await read()).get(d.name) ?? [];
          return {
            // The registry's name, not ours: an OpenMetrics registry takes `_total` off a
            // counter's name before it asks, and puts it back on each sample.
            name: collected.name,
            help: d.help,
            type: d.type,
            aggregator,
            values: samples.map((s) => ({
              labels: { ...s.labels },
              value: s.value,
              ...(s.name !== d.name && { metricName: s.name }),
            })),
          };
        },
        reset() {},
      };
      registry.registerMetric(collected);
      registered.push(d.name);
    }
  } catch (error) {
    // A name taken already (registered twice): leave the registry as it was.
    for (const name of registered) registry.removeSingleMetric(name);
    if (!/already been registered/i.test(errorMessage(error))) throw error;
    throw new OutboxkitError(
      'metrics-already-registered',
      `Cannot register outboxkit's metrics: ${registering} is in this registry already (registerPrometheusMetrics called twice on it?). Call unregister() of the earlier registration first, or register in another Registry; nothing was registered`,
      { cause: error },
    );
  }

  let done = false;
  return Object.freeze({
    metrics: Object.freeze([...registered]),
    unregister() {
      if (done) return;
      done = true;
      for (const name of registered) registry.removeSingleMetric(name);
    },
  });
}

function byFamily(samples: readonly MetricSample[]): Map<string, MetricSample[]> {
  const families = new Map<string, MetricSample[]>();
  for (const s of samples) {
    const family = s.family ?? s.name;
    const list = families.get(family);
    if (list) list.push(s);
    else families.set(family, [s]);
  }
  return families;
}
