import type { ConsumerStats } from '../consumer/consumer-stats.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { pgQueryable } from '../options/database-handle.js';
import { optionNames } from '../options/option-names.js';
import { RENAMED_OPTIONS } from '../options/renamed-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import type { RelayStats } from '../relay/relay-stats.js';
import { DEFAULT_SCHEMA, outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import type { OutboxCounts, OutboxStatus } from '../status/outbox-status.js';
import { consoleLogger, type OutboxLogger } from '../util/logger.js';
import { resolveLogger } from '../util/resolve-logger.js';
import type { LatencyHistogram } from './latency-histogram.js';
import {
  CONSUMER_METRICS,
  type MetricDefinition,
  OUTBOX_METRICS,
  RELAY_METRICS,
} from './metric-catalogue.js';
import type { MetricSample } from './metric-sample.js';
import { OutboxGaugeReader } from './outbox-gauge-reader.js';

/** What `collectMetrics` reads from a histogram: a `LatencyHistogram` fits. */
export type HistogramSource = Pick<LatencyHistogram, 'count' | 'sum' | 'buckets'>;

/** What `collectMetrics` reads from a relay: an `OutboxRelay` fits. */
export interface RelayMetricsSource {
  stats(): Readonly<RelayStats>;
  /** Whether the relay can publish now, for `outboxkit_relay_connected`. */
  readonly isConnected?: boolean | undefined;
}

/** What `collectMetrics` reads from a consumer host: a `ConsumerHost` fits. */
export interface ConsumerMetricsSource {
  readonly consumers: readonly string[];
  stats(consumer: string): Readonly<ConsumerStats>;
  readonly inFlight?: number | undefined;
  /** Whether the host is connected to RabbitMQ, for `outboxkit_consumer_connected`. */
  readonly isConnected?: boolean | undefined;
  /** Run times of the consumer's handler, for `outboxkit_consumer_handler_seconds`. */
  handlerSeconds?(consumer: string): HistogramSource;
  /** Transactions retried in place while Postgres is unavailable, for `outboxkit_consumer_transactions_waiting_for_database`. */
  waitingForDatabase?(consumer: string): number;
}

export interface CollectMetricsOptions {
  /** The relay of this process, for its running totals. */
  readonly relay?: RelayMetricsSource | undefined;
  /** The consumer host of this process, for its consumers' running totals. */
  readonly consumers?: ConsumerMetricsSource | undefined;
  /**
   * A pg pool on the outbox database, for the outbox gauges (pending, oldest age, retrying,
   * parked per exchange): one statement per collection, the one `outboxkit status` runs.
   */
  readonly pool?: PgQueryable | undefined;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /** Where a warning goes when the outbox gauges are left out of a collection. Default stderr. */
  readonly logger?: OutboxLogger | undefined;
}

/** The relay stats that are counts. */
type RelayCounter = Exclude<keyof RelayStats, 'publishSeconds'>;

const RELAY_COUNTERS: ReadonlyArray<[RelayCounter, MetricDefinition]> = (
  [
    'published',
    'retried',
    'infrastructureRetries',
    'deferred',
    'parked',
    'released',
    'batches',
    'errors',
  ] as const
).map((key) => [key, RELAY_METRICS[key]]);

const CONSUMER_COUNTERS: ReadonlyArray<[keyof ConsumerStats, MetricDefinition]> = (
  [
    'received',
    'handled',
    'duplicates',
    'failures',
    'timeouts',
    'retried',
    'deadLettered',
    'requeued',
    'databaseRetries',
    'databaseRequeues',
  ] as const
).map((key) => [key, CONSUMER_METRICS[key]]);

/** A histogram's series: cumulative `_bucket`s by upper bound `le`, then `_sum` and `_count`. */
function histogramSamples(
  { name: family, help }: MetricDefinition,
  labels: Readonly<Record<string, string>>,
  histogram: HistogramSource,
): MetricSample[] {
  const sample = (suffix: string, value: number, extra: Record<string, string> = {}) =>
    ({
      name: `${family}_${suffix}`,
      family,
      help,
      type: 'histogram',
      labels: { ...labels, ...extra },
      value,
    }) as const;
  return [
    ...histogram
      .buckets()
      .map((b) => sample('bucket', b.count, { le: Number.isFinite(b.le) ? String(b.le) : '+Inf' })),
    sample('sum', histogram.sum),
    sample('count', histogram.count),
  ];
}

/**
 * Reads the current metrics of this process: the relay's and consumers' running totals, and
 * (with `pool`) the outbox gauges, which are left out (with a warning) when the database does
 * not answer within 3 s, so a stalled database never holds up a scrape. Counters and histograms are per process, from its start; use
 * a rate over them (`rate(outboxkit_relay_published_total[1m])` is messages published per
 * second; `histogram_quantile(0.99, rate(outboxkit_relay_publish_seconds_bucket[5m]))` is the
 * 99th percentile of publish latency).
 *
 * @example
 * const samples = await collectMetrics({ relay, consumers: host, pool });
 * response.end(renderPrometheus(samples));
 */
export async function collectMetrics(options: CollectMetricsOptions): Promise<MetricSample[]> {
  checkMetricsOptions(options);
  const samples: MetricSample[] = [];
  if (options.relay) {
    const stats = options.relay.stats();
    for (const [key, { name, help }] of RELAY_COUNTERS) {
      samples.push({ name, help, type: 'counter', labels: {}, value: stats[key] });
    }
    samples.push(...histogramSamples(RELAY_METRICS.publishSeconds, {}, stats.publishSeconds));
    samples.push(...connectedSample(RELAY_METRICS.connected, options.relay.isConnected));
  }
  if (options.consumers) {
    const host = options.consumers;
    // One reading per consumer: each is a copy.
    const stats = new Map(host.consumers.map((consumer) => [consumer, host.stats(consumer)]));
    for (const [key, { name, help }] of CONSUMER_COUNTERS) {
      for (const [consumer, counts] of stats) {
        samples.push({ name, help, type: 'counter', labels: { consumer }, value: counts[key] });
      }
    }
    if (host.handlerSeconds) {
      for (const consumer of host.consumers) {
        samples.push(
          ...histogramSamples(
            CONSUMER_METRICS.handlerSeconds,
            { consumer },
            host.handlerSeconds(consumer),
          ),
        );
      }
    }
    if (host.waitingForDatabase) {
      for (const consumer of host.consumers) {
        samples.push({
          name: CONSUMER_METRICS.waitingForDatabase.name,
          help: CONSUMER_METRICS.waitingForDatabase.help,
          type: 'gauge',
          labels: { consumer },
          value: host.waitingForDatabase(consumer),
        });
      }
    }
    samples.push(...connectedSample(CONSUMER_METRICS.connected, host.isConnected));
    if (host.inFlight !== undefined) {
      samples.push({
        name: CONSUMER_METRICS.inFlight.name,
        help: CONSUMER_METRICS.inFlight.help,
        type: 'gauge',
        labels: {},
        value: host.inFlight,
      });
    }
  }
  // Checked even without a pool, so a bad logger is refused on the first call, not later.
  const logger = resolveLogger(options.logger, consoleLogger);
  if (options.pool) {
    const status = await outboxGaugeReader(options.pool, options.schema, logger).read();
    if (status) samples.push(...outboxGaugeSamples(status));
  }
  return samples;
}

/**
 * The 1 or 0 of a connection gauge; none for a source that does not tell (the metrics stay
 * open to sources of the application's own that have only `stats`).
 */
function connectedSample(
  metric: { readonly name: string; readonly help: string },
  connected: boolean | undefined,
): MetricSample[] {
  if (typeof connected !== 'boolean') return [];
  return [
    { name: metric.name, help: metric.help, type: 'gauge', labels: {}, value: connected ? 1 : 0 },
  ];
}

/**
 * One reader per pool and schema, kept as long as the pool lives: a read that outlives its
 * collection is still running at the next one, which then goes without the gauges rather than
 * stack another stalled statement on the pool. The first caller's logger is the reader's.
 */
const gaugeReaders = new WeakMap<PgQueryable, Map<string, OutboxGaugeReader>>();

function outboxGaugeReader(
  pool: PgQueryable,
  schema: string | undefined,
  logger: OutboxLogger,
): OutboxGaugeReader {
  let bySchema = gaugeReaders.get(pool);
  if (!bySchema) {
    bySchema = new Map();
    gaugeReaders.set(pool, bySchema);
  }
  const key = schema ?? DEFAULT_SCHEMA;
  let reader = bySchema.get(key);
  if (!reader) {
    reader = new OutboxGaugeReader(pool, { schema, logger });
    bySchema.set(key, reader);
  }
  return reader;
}

/** The outbox gauges of one status read: pending, scheduled, retrying and parked by exchange, the oldest age. */
function outboxGaugeSamples(status: OutboxStatus): MetricSample[] {
  const samples: MetricSample[] = [];
  const gauge = ({ name, help }: MetricDefinition, pick: (c: OutboxCounts) => number) => {
    for (const e of status.exchanges) {
      samples.push({ name, help, type: 'gauge', labels: { exchange: e.exchange }, value: pick(e) });
    }
  };
  gauge(OUTBOX_METRICS.pending, (c) => c.pending);
  gauge(OUTBOX_METRICS.scheduled, (c) => c.scheduled);
  gauge(OUTBOX_METRICS.retrying, (c) => c.retrying);
  gauge(OUTBOX_METRICS.parked, (c) => c.parked);
  samples.push({
    name: OUTBOX_METRICS.oldestPendingAge.name,
    help: OUTBOX_METRICS.oldestPendingAge.help,
    type: 'gauge',
    labels: {},
    value: status.total.oldestPendingAgeSeconds ?? 0,
  });
  return samples;
}

/** Every option of `CollectMetricsOptions`, for the options table in docs/options.md. */
export const METRICS_OPTION_NAMES = optionNames<CollectMetricsOptions>()([
  'relay',
  'consumers',
  'pool',
  'schema',
  'logger',
]);

/**
 * Refuses what `collectMetrics` could not read, naming it, before any is read: `{}` for the
 * relay would fail with a TypeError deep inside, a URL for the pool at every scrape.
 */
/**
 * Checks the sources, naming `owner` (the function the caller called): the registrations check
 * them when registering, so that a misspelt source fails there rather than at every scrape.
 */
export function checkMetricsOptions(
  options: CollectMetricsOptions,
  owner = 'collectMetrics',
): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigurationError(
      'options',
      `${owner} takes an object { ${METRICS_OPTION_NAMES.join(', ')} }`,
    );
  }
  rejectUnknownOptions(options, METRICS_OPTION_NAMES, {
    owner,
    renames: RENAMED_OPTIONS.metrics,
  });
  const relay = options.relay as { stats?: unknown } | undefined;
  if (relay !== undefined && (typeof relay !== 'object' || typeof relay.stats !== 'function')) {
    throw new ConfigurationError('relay', 'must be an OutboxRelay (an object with stats())');
  }
  const host = options.consumers as { consumers?: unknown; stats?: unknown } | undefined;
  if (
    host !== undefined &&
    (typeof host !== 'object' || !Array.isArray(host.consumers) || typeof host.stats !== 'function')
  ) {
    throw new ConfigurationError(
      'consumers',
      'must be a ConsumerHost (an object with consumers and stats())',
    );
  }
  if (options.pool !== undefined) pgQueryable('pool', options.pool);
  // Checked here, not at the first read: a bad schema would otherwise only warn at each scrape.
  if (options.schema !== undefined) outboxTables(options.schema);
}
