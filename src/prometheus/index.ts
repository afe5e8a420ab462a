/**
 * `outboxkit/prometheus`: outboxkit's metrics in the application's own prom-client registry.
 * prom-client is an optional peer dependency; this entry point never imports it.
 */
export {
  type PrometheusRegistration,
  type PrometheusRegistry,
  registerPrometheusMetrics,
} from './register-prometheus-metrics.js';
