import { setTimeout as delay } from 'node:timers/promises';
import { monotonicMs } from '../util/monotonic-clock.js';
import { TestingTimeoutError } from './testing-timeout-error.js';

/** How often helpers look again. A re-check period, not a guess at how long anything takes. */
export const POLL_INTERVAL_MS = 10;

/**
 * Calls `check` until it returns something other than `undefined`; throws a
 * `TestingTimeoutError` naming `what` (with `describe()`'s last state) after `timeoutMs`.
 */
export async function pollUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined>,
  describe?: () => string,
): Promise<T> {
  const deadline = monotonicMs() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      // Keep polling through a transient failure, but say what it was if time runs out.
      lastError = error;
    }
    if (monotonicMs() >= deadline) {
      throw new TestingTimeoutError(what, timeoutMs, describe?.(), lastError);
    }
    await delay(POLL_INTERVAL_MS);
  }
}
