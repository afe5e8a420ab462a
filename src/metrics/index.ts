export {
  type CollectMetricsOptions,
  type ConsumerMetricsSource,
  collectMetrics,
  type RelayMetricsSource,
} from './collect-metrics.js';
export type { MetricSample } from './metric-sample.js';
export { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from './render-prometheus.js';
