import { clearTimeout, setTimeout } from 'node:timers';
import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * Waits for `promise` at most `ms`; resolves to `undefined` on timeout instead of rejecting.
 * For closing things on a link that may be dead, where a close handshake can wait forever.
 */
export async function settleWithin<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for `promise` at most `ms`; rejects with an `OutboxkitError` (`timeout`) naming `what`
 * once that has passed. The timer is cleared either way, so it never holds the process open.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  what = 'the operation',
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new OutboxkitError('timeout', `${what} took over ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
