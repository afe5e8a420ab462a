import { ConfigurationError } from '../errors/configuration-error.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { durationMs } from '../util/duration-option.js';
import { nestedOptions } from './nested-options.js';
import { optionNames } from './option-names.js';

/** Every field of a backoff, for its unknown-key check. */
export const BACKOFF_OPTION_NAMES = optionNames<BackoffPolicy>()([
  'initialMs',
  'maxMs',
  'factor',
  'jitter',
]);

/** How one component reads its backoff. */
export interface BackoffRules {
  /**
   * Fill the fields left out from `fallback` (a consumer's `retry.backoff`), instead of taking
   * `fallback` only when the whole backoff is left out.
   */
  readonly fillFromFallback?: boolean;
  /** Why `jitter` is refused, for a backoff that has none; undefined when it has. */
  readonly noJitter?: string;
}

/**
 * Returns a backoff option (`retry.backoff`, `reconnectBackoff`), or `fallback` when it is
 * undefined, after checking every field: a `factor` or `jitter` that is not a number in range
 * (NaN above all) makes every delay NaN, that is no delay at all: a retry or reconnect storm.
 * The relay, the consumer host and the consumers all read theirs here, so one rule holds.
 */
export function backoffOption(
  option: string,
  value: Partial<BackoffPolicy> | undefined,
  fallback: BackoffPolicy,
  { fillFromFallback = false, noJitter }: BackoffRules = {},
): BackoffPolicy {
  // Checked before the unknown names, so the message says why rather than "not an option".
  if (noJitter !== undefined && (value as { jitter?: unknown } | undefined)?.jitter !== undefined) {
    throw new ConfigurationError(`${option}.jitter`, noJitter);
  }
  const given = nestedOptions(
    option,
    value,
    // A jitter where none is allowed was refused just above.
    BACKOFF_OPTION_NAMES,
    'a backoff',
  );
  // Without fillFromFallback a field left out is refused by its check below.
  const backoff: BackoffPolicy =
    given === undefined
      ? fallback
      : fillFromFallback
        ? { ...fallback, ...defined(given) }
        : (given as BackoffPolicy);
  const initialMs = durationMs(`${option}.initialMs`, backoff.initialMs);
  if (durationMs(`${option}.maxMs`, backoff.maxMs) < initialMs) {
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

/** The fields whose value is not undefined: an undefined one sets nothing, so keeps the default. */
function defined(backoff: Partial<BackoffPolicy>): Partial<BackoffPolicy> {
  return Object.fromEntries(Object.entries(backoff).filter(([, v]) => v !== undefined));
}
