/**
 * `outboxkit/metrics`: the outbox's, the relay's and the consumers' metrics as samples, and
 * their Prometheus text format.
 */
export {
  type CollectMetricsOptions,
  type ConsumerMetricsSource,
  collectMetrics,
  type HistogramSource,
  type RelayMetricsSource,
} from './collect-metrics.js';
export {
  DEFAULT_LATENCY_BUCKETS,
  type HistogramBucket,
  LatencyHistogram,
} from './latency-histogram.js';
export {
  type MetricDefinition,
  OUTBOXKIT_METRICS,
} from './metric-catalogue.js';
export type { MetricSample } from './metric-sample.js';
export {
  type OpenTelemetryMetricsOptions,
  type OpenTelemetryRegistration,
  registerOpenTelemetryMetrics,
} from './register-opentelemetry-metrics.js';
export { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './render-prometheus.js';
