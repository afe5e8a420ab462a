import { positiveInteger } from '../util/positive-integer.js';

/**
 * The most attempts a `retry.maxAttempts` takes. A consumer works out its retry delays up front,
 * one per attempt (its delay queues are made from them), so a count of 1e8 ran the process out
 * of memory at construction. 10,000 attempts at even a 1 s backoff is hours of retrying: past
 * that, a message is better parked and replayed than retried.
 */
export const MAX_ATTEMPTS = 10_000;

/** Returns `retry.maxAttempts` (relay or consumer), or `fallback` when it is undefined. */
export function maxAttemptsOption(option: string, value: unknown, fallback: number): number {
  return positiveInteger(option, value, fallback, {
    max: MAX_ATTEMPTS,
    why: 'past that, park the message and replay it instead',
  });
}
