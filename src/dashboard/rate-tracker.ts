import type { OutboxActivity } from './outbox-activity.js';

/** Per-second rates over the last window, or `null` where there is not yet a window to measure. */
export interface OutboxRates {
  readonly publishedPerSecond: number | null;
  readonly writtenPerSecond: number | null;
  readonly parkedPerSecond: number | null;
  /** Seconds between the two samples the rates come from; `null` with a single sample. */
  readonly windowSeconds: number | null;
}

interface Sample {
  readonly atMs: number;
  readonly activity: OutboxActivity;
}

/**
 * Turns successive samples of running totals into rates over a sliding window: the newest
 * sample against the newest one at least `windowMs` older (or the oldest kept, early on). A
 * sample older than `maxAgeMs` is never a baseline: after a gap in the samples (nobody had the
 * page open), the rate would be an average over the gap, so there is none until the next
 * sample. A total that went down means Postgres' statistics were reset: the samples before are
 * dropped.
 */
export class RateTracker {
  readonly #windowMs: number;
  readonly #maxAgeMs: number;
  #samples: Sample[] = [];

  constructor(windowMs = 10_000, maxAgeMs = 2 * windowMs) {
    this.#windowMs = windowMs;
    this.#maxAgeMs = Math.max(maxAgeMs, windowMs);
  }

  /** Records a sample taken at `atMs` (a monotonic clock) and returns the rates it gives. */
  observe(atMs: number, activity: OutboxActivity | null): OutboxRates {
    if (activity === null) {
      this.#samples = [];
      return NO_RATES;
    }
    const last = this.#samples.at(-1);
    if (last && wentDown(last.activity, activity)) this.#samples = [];
    if (last && atMs <= last.atMs) return this.#rates();
    this.#samples.push({ atMs, activity });
    // Too old to be a baseline: a rate over a gap in the samples is not a recent rate.
    const recent = this.#samples.findIndex((s) => atMs - s.atMs <= this.#maxAgeMs);
    if (recent > 0) this.#samples = this.#samples.slice(recent);
    // Keep the newest sample that is a full window old, as the baseline, and all after it.
    let firstKept = 0;
    for (let i = 0; i < this.#samples.length - 1; i += 1) {
      if (atMs - this.#samples[i]!.atMs >= this.#windowMs) firstKept = i;
    }
    if (firstKept > 0) this.#samples = this.#samples.slice(firstKept);
    return this.#rates();
  }

  #rates(): OutboxRates {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || first === last) return NO_RATES;
    const seconds = (last.atMs - first.atMs) / 1000;
    const rate = (pick: (a: OutboxActivity) => number) =>
      (pick(last.activity) - pick(first.activity)) / seconds;
    return {
      publishedPerSecond: rate((a) => a.published),
      writtenPerSecond: rate((a) => a.written),
      parkedPerSecond: rate((a) => a.parked),
      windowSeconds: seconds,
    };
  }
}

const NO_RATES: OutboxRates = Object.freeze({
  publishedPerSecond: null,
  writtenPerSecond: null,
  parkedPerSecond: null,
  windowSeconds: null,
});

function wentDown(before: OutboxActivity, after: OutboxActivity): boolean {
  return (
    after.written < before.written ||
    after.published < before.published ||
    after.parked < before.parked
  );
}
