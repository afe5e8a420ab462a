import { performance } from 'node:perf_hooks';
/**
 * Whole milliseconds on the monotonic clock, as `Date.now()` gives them on the wall clock: for
 * deadlines and ages, which must not move when NTP or an operator steps the wall clock. Not a
 * time of day, and only comparable within one process.
 */
export function monotonicMs(): number {
  return Math.floor(performance.now());
}
