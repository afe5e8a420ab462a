import { positiveInteger } from './positive-integer.js';

/**
 * The longest delay Node's timers take. Above it `setTimeout` fires after 1 ms (with a
 * TimeoutOverflowWarning): a 30-day interval would run in a hot loop, a huge timeout would
 * give up at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** How the limit reads in messages and docs. */
export const MAX_TIMER_TEXT = `${MAX_TIMER_MS} ms (about 24.8 days)`;

/**
 * Returns a duration option in milliseconds (`stopTimeoutMs`, `retention.intervalMs`, a
 * backoff's `maxMs`, ...), or `fallback` when it is undefined, after checking it is a positive
 * integer of at most `max` (Node's timer limit unless the caller has a lower one, with `why`).
 */
export function durationMs(
  option: string,
  value: unknown,
  fallback?: number,
  max: { readonly ms: number; readonly why: string } = {
    ms: MAX_TIMER_MS,
    why: "Node's timers fire at once above it",
  },
): number {
  return positiveInteger(option, value, fallback, {
    max: max.ms,
    text: max.ms === MAX_TIMER_MS ? MAX_TIMER_TEXT : `${max.ms} ms`,
    why: max.why,
  });
}
