import type { ConsumerStats } from '../consumer/consumer-stats.js';
import { optionNames } from '../options/option-names.js';
import { RENAMED_OPTIONS, rejectRenamedOptions } from '../options/renamed-options.js';
import type { RelayStats } from '../relay/relay-stats.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { outboxStatus } from '../status/outbox-status.js';
import type { LatencyHistogram } from './latency-histogram.js';
import type { MetricSample } from './metric-sample.js';

/** What `collectMetrics` reads from a histogram: a `LatencyHistogram` fits. */
export type HistogramSource = Pick<LatencyHistogram, 'count' | 'sum' | 'buckets'>;

/** What `collectMetrics` reads from a relay: an `OutboxRelay` fits. */
export interface RelayMetricsSource {
  stats(): Readonly<RelayStats>;
}

/** What `collectMetrics` reads from a consumer host: a `ConsumerHost` fits. */
export interface ConsumerMetricsSource {
  readonly consumers: readonly string[];
  stats(consumer: string): Readonly<ConsumerStats>;
  readonly inFlight?: number;
  /** Run times of the consumer's handler, for `outboxkit_consumer_handler_seconds`. */
  handlerSeconds?(consumer: string): HistogramSource;
  /** Transactions retried in place while Postgres is unavailable, for `outboxkit_consumer_waiting_for_database`. */
  waitingForDatabase?(consumer: string): number;
}

export interface CollectMetricsOptions {
  /** The relay of this process, for its running totals. */
  readonly relay?: RelayMetricsSource;
  /** The consumer host of this process, for its consumers' running totals. */
  readonly consumers?: ConsumerMetricsSource;
  /**
   * A pg pool on the outbox database, for the outbox gauges (pending, oldest age, retrying,
   * parked per exchange): one statement per collection, the one `outboxkit status` runs.
   */
  readonly pool?: PgQueryable;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string;
}

/** The relay stats that are counts. */
type RelayCounter = Exclude<keyof RelayStats, 'publishSeconds'>;

const RELAY_COUNTERS: ReadonlyArray<[RelayCounter, string, string]> = [
  [
    'published',
    'outboxkit_relay_published_total',
    'Outbox rows confirmed by the broker and deleted.',
  ],
  [
    'retried',
    'outboxkit_relay_retries_total',
    'Outbox rows scheduled for another publish attempt.',
  ],
  [
    'infrastructureRetries',
    'outboxkit_relay_infrastructure_retries_total',
    'Of the retries, rows that failed for the broker or the network (nack, no confirm, closed channel); never parked.',
  ],
  [
    'deferred',
    'outboxkit_relay_deferred_total',
    'Outbox rows put off because their exchange does not exist; no attempt counted.',
  ],
  ['parked', 'outboxkit_relay_parked_total', 'Outbox rows this relay moved to the parked table.'],
  [
    'released',
    'outboxkit_relay_released_total',
    'Outbox rows released untouched when the relay stopped.',
  ],
  ['batches', 'outboxkit_relay_batches_total', 'Claim-publish-settle cycles run.'],
  [
    'errors',
    'outboxkit_relay_errors_total',
    'Database or broker errors that made a lane back off.',
  ],
];

const CONSUMER_COUNTERS: ReadonlyArray<[keyof ConsumerStats, string, string]> = [
  ['received', 'outboxkit_consumer_received_total', 'Deliveries received, redeliveries included.'],
  ['handled', 'outboxkit_consumer_handled_total', 'Messages whose handler committed.'],
  [
    'duplicates',
    'outboxkit_consumer_duplicates_total',
    'Messages acked without running the handler: already processed.',
  ],
  [
    'failures',
    'outboxkit_consumer_failures_total',
    'Handler attempts that failed, time-outs included.',
  ],
  ['timeouts', 'outboxkit_consumer_timeouts_total', 'Handler attempts that timed out.'],
  ['retried', 'outboxkit_consumer_retried_total', 'Failed messages scheduled for another attempt.'],
  [
    'deadLettered',
    'outboxkit_consumer_dead_lettered_total',
    'Messages moved to the dead-letter queue.',
  ],
  [
    'requeued',
    'outboxkit_consumer_requeued_total',
    'Deliveries handed back to the queue unhandled.',
  ],
  [
    'databaseRetries',
    'outboxkit_consumer_database_retries_total',
    'Transactions retried in place because Postgres was unavailable to them; no attempt counted.',
  ],
  [
    'databaseRequeues',
    'outboxkit_consumer_database_requeues_total',
    'Deliveries handed back to the broker after databaseRetryLimitMs of database retries.',
  ],
];

/** A histogram's series: cumulative `_bucket`s by upper bound `le`, then `_sum` and `_count`. */
function histogramSamples(
  family: string,
  help: string,
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
 * (with `pool`) the outbox gauges. Counters and histograms are per process, from its start; use
 * a rate over them (`rate(outboxkit_relay_published_total[1m])` is messages published per
 * second; `histogram_quantile(0.99, rate(outboxkit_relay_publish_seconds_bucket[5m]))` is the
 * 99th percentile of publish latency).
 *
 * @example
 * const samples = await collectMetrics({ relay, consumers: host, pool });
 * response.end(renderPrometheus(samples));
 */
export async function collectMetrics(options: CollectMetricsOptions): Promise<MetricSample[]> {
  const samples: MetricSample[] = [];
  if (options.relay) {
    const stats = options.relay.stats();
    for (const [key, name, help] of RELAY_COUNTERS) {
      samples.push({ name, help, type: 'counter', labels: {}, value: stats[key] });
    }
    samples.push(
      ...histogramSamples(
        'outboxkit_relay_publish_seconds',
        'Time from publishing a message to the broker confirming (or returning) it.',
        {},
        stats.publishSeconds,
      ),
    );
  }
  if (options.consumers) {
    const host = options.consumers;
    for (const [key, name, help] of CONSUMER_COUNTERS) {
      for (const consumer of host.consumers) {
        const value = host.stats(consumer)[key];
        samples.push({ name, help, type: 'counter', labels: { consumer }, value });
      }
    }
    if (host.handlerSeconds) {
      for (const consumer of host.consumers) {
        samples.push(
          ...histogramSamples(
            'outboxkit_consumer_handler_seconds',
            'Run time of handler attempts, failed and timed-out ones included.',
            { consumer },
            host.handlerSeconds(consumer),
          ),
        );
      }
    }
    if (host.waitingForDatabase) {
      for (const consumer of host.consumers) {
        samples.push({
          name: 'outboxkit_consumer_waiting_for_database',
          help: 'Transactions now retried in place because Postgres is unavailable to them.',
          type: 'gauge',
          labels: { consumer },
          value: host.waitingForDatabase(consumer),
        });
      }
    }
    if (host.inFlight !== undefined) {
      samples.push({
        name: 'outboxkit_consumer_in_flight',
        help: 'Deliveries received and not yet settled, over all consumers of the host.',
        type: 'gauge',
        labels: {},
        value: host.inFlight,
      });
    }
  }
  rejectRenamedOptions(options, RENAMED_OPTIONS.metrics);
  if (options.pool) {
    const status = await outboxStatus(options.pool, {
      ...(options.schema !== undefined && { schema: options.schema }),
    });
    const gauge = (name: string, help: string, pick: (c: typeof status.total) => number) => {
      for (const e of status.exchanges) {
        samples.push({
          name,
          help,
          type: 'gauge',
          labels: { exchange: e.exchange },
          value: pick(e),
        });
      }
    };
    gauge('outboxkit_outbox_pending', 'Outbox rows not yet published.', (c) => c.pending);
    gauge(
      'outboxkit_outbox_retrying',
      'Pending rows waiting for another attempt.',
      (c) => c.retrying,
    );
    gauge(
      'outboxkit_outbox_parked',
      'Rows in the parked table: not published without a replay.',
      (c) => c.parked,
    );
    samples.push({
      name: 'outboxkit_outbox_oldest_pending_age_seconds',
      help: 'Age of the oldest pending outbox row; 0 when nothing is pending.',
      type: 'gauge',
      labels: {},
      value: status.total.oldestPendingAgeSeconds ?? 0,
    });
  }
  return samples;
}

/** Every option of `CollectMetricsOptions`, for the options table in docs/options.md. */
export const METRICS_OPTION_NAMES = optionNames<CollectMetricsOptions>()([
  'relay',
  'consumers',
  'pool',
  'schema',
]);
