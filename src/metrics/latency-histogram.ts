import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * Upper bounds, in seconds, of the buckets latencies fall into: 1 ms to 1 min, roughly three
 * per decade, the spread of broker confirms (milliseconds) and of handlers (up to their
 * time limit).
 */
export const DEFAULT_LATENCY_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** One cumulative bucket: how many observations were at most `le` seconds. */
export interface HistogramBucket {
  /** Upper bound in seconds; `Infinity` for the last bucket, which counts everything. */
  readonly le: number;
  readonly count: number;
}

/**
 * Durations in seconds counted into fixed buckets, with their sum and count: the shape of a
 * Prometheus histogram, from which `histogram_quantile` estimates percentiles. Observing is
 * O(buckets) and allocates nothing, so it can sit on the publish and handler paths.
 *
 * @example
 * const started = performance.now();
 * await handler(payload, context);
 * histogram.observe((performance.now() - started) / 1000);
 */
export class LatencyHistogram {
  /** Upper bounds in seconds, ascending; the `+Inf` bucket is implied. */
  readonly bounds: readonly number[];
  /** `#counts[i]` counts observations in `(bounds[i-1], bounds[i]]`; the last one, above all. */
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  /** Who else records each observation (an OpenTelemetry histogram); undefined: nobody. */
  #listeners: Array<(seconds: number) => void> | undefined;

  constructor(bounds: readonly number[] = DEFAULT_LATENCY_BUCKETS) {
    if (!Array.isArray(bounds)) {
      throw new ConfigurationError('bounds', 'must be an array of upper bounds in seconds');
    }
    for (const [i, b] of bounds.entries()) {
      if (typeof b !== 'number' || !Number.isFinite(b) || (i > 0 && b <= bounds[i - 1]!)) {
        throw new ConfigurationError(
          'bounds',
          `must be finite numbers in strictly ascending order; bounds[${i}] is ${String(b)}`,
        );
      }
    }
    this.bounds = Object.freeze([...bounds]);
    this.#counts = new Array<number>(bounds.length + 1).fill(0);
  }

  /** Counts one duration. Negative or non-finite values (a clock step) are ignored. */
  observe(seconds: number): void {
    if (!(seconds >= 0 && Number.isFinite(seconds))) return;
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i += 1;
    this.#counts[i]! += 1;
    this.#sum += seconds;
    this.#count += 1;
    if (this.#listeners !== undefined) for (const listener of this.#listeners) listener(seconds);
  }

  /**
   * Calls `listener` with every duration observed from now on, for a metric system that records
   * histograms itself (OpenTelemetry has no observable histogram). Returns the unsubscribe.
   */
  subscribe(listener: (seconds: number) => void): () => void {
    this.#listeners = [...(this.#listeners ?? []), listener];
    return () => {
      const rest = (this.#listeners ?? []).filter((l) => l !== listener);
      this.#listeners = rest.length > 0 ? rest : undefined;
    };
  }

  /** Observations so far. */
  get count(): number {
    return this.#count;
  }

  /** Sum of the observed durations, in seconds. */
  get sum(): number {
    return this.#sum;
  }

  /** Cumulative buckets, ascending, ending with `le: Infinity` whose count is `count`. */
  buckets(): HistogramBucket[] {
    let running = 0;
    return this.#counts.map((n, i) => {
      running += n;
      return { le: this.bounds[i] ?? Number.POSITIVE_INFINITY, count: running };
    });
  }

  /** Count and sum only, so that stats objects holding a histogram log compactly. */
  toJSON(): { count: number; sum: number } {
    return { count: this.#count, sum: this.#sum };
  }
}
