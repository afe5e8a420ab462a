import { AssertionError } from 'node:assert';
import { monotonicMs } from '../../src/util/monotonic-clock.js';

/**
 * Re-checks a condition until it holds; fails with `what` after `timeoutMs`. The interval is a
 * re-check period, not a guess at how long something takes.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 60_000,
  intervalMs = 20,
): Promise<T> {
  const deadline = monotonicMs() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      // A failed assertion inside the check is a verdict, not a condition still to come true.
      if (error instanceof AssertionError) throw error;
      last = error;
    }
    if (monotonicMs() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: last });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * `promise`, or a failure naming `what` after `timeoutMs`: for a step that has no bound of its
 * own (a close, a start), so that a hang says where it happened instead of timing out the test.
 */
export async function within<T>(what: string, promise: Promise<T>, timeoutMs = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}
