/** One time series' current value, as Prometheus and most metric systems model it. */
export interface MetricSample {
  /**
   * `outboxkit_...`, snake case; counters end in `_total`, a histogram's series in `_bucket`,
   * `_sum` or `_count`.
   */
  readonly name: string;
  readonly help: string;
  /**
   * A counter only grows (per process); a gauge is a level; a histogram is a family of
   * cumulative `_bucket` counters (label `le`), a `_sum` and a `_count`.
   */
  readonly type: 'counter' | 'gauge' | 'histogram';
  /** The metric a histogram's series belong to (`name` without the suffix); `name` if absent. */
  readonly family?: string | undefined;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
