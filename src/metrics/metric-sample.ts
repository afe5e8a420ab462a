/** One time series' current value, as Prometheus and most metric systems model it. */
export interface MetricSample {
  /** `outboxkit_...`, snake case, counters ending in `_total`. */
  readonly name: string;
  readonly help: string;
  /** A counter only grows (per process); a gauge is a level. */
  readonly type: 'counter' | 'gauge';
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}
