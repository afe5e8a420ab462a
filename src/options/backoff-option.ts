import { ConfigurationError } from '../errors/configuration-error.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { positiveInteger } from '../util/positive-integer.js';

/**
 * Returns a backoff option (`retry.backoff`, `reconnectBackoff`), or `fallback` when it is
 * undefined, after checking every field: a `factor` or `jitter` that is not a number in range
 * (NaN above all) makes every delay NaN, that is no delay at all: a retry or reconnect storm.
 */
export function backoffOption(
  option: string,
  value: BackoffPolicy | undefined,
  fallback: BackoffPolicy,
): BackoffPolicy {
  const backoff = value ?? fallback;
  if (backoff === null || typeof backoff !== 'object') {
    throw new ConfigurationError(option, 'must be { initialMs, maxMs, factor?, jitter? }');
  }
  const initialMs = positiveInteger(`${option}.initialMs`, backoff.initialMs);
  if (positiveInteger(`${option}.maxMs`, backoff.maxMs) < initialMs) {
    throw new ConfigurationError(`${option}.maxMs`, 'must be at least initialMs');
  }
  const { factor, jitter } = backoff;
  if (factor !== undefined && !(typeof factor === 'number' && factor >= 1 && factor < Infinity)) {
    throw new ConfigurationError(
      `${option}.factor`,
      `must be a finite number of at least 1, got ${String(factor)}`,
    );
  }
  if (jitter !== undefined && !(typeof jitter === 'number' && jitter >= 0 && jitter <= 1)) {
    throw new ConfigurationError(
      `${option}.jitter`,
      `must be a number from 0 to 1, got ${String(jitter)}`,
    );
  }
  return backoff;
}
