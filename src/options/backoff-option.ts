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
  /** Why `jitter` is refused, for a backoff that has none; undefined when it has. */
  readonly noJitter?: string;
}

/**
 * Returns a backoff option (`retry.backoff`, `reconnectBackoff`), with the fields left out taken
 * from `fallback`, after checking every field: a `factor` or `jitter` that is not a number in
 * range (NaN above all) makes every delay NaN, that is no delay at all: a retry or reconnect
 * storm. A bound left out follows the one given where the default would contradict it
 * (`{ maxMs: 50 }` starts at 50 ms, `{ initialMs: 60_000 }` never waits less), so that a
 * partial backoff is refused only for what the user wrote. The relay, the consumer host and the
 * consumers all read theirs here, so one rule holds.
 */
export function backoffOption(
  option: string,
  value: Partial<BackoffPolicy> | undefined,
  fallback: BackoffPolicy,
  { noJitter }: BackoffRules = {},
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
  const backoff: BackoffPolicy =
    given === undefined ? fallback : withBoundsOf(defined(given), fallback, option);
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

/**
 * `given` over `fallback`; a bound left out moves to the given one when the fallback's would be
 * on its wrong side. Given bounds are checked as given, so a duration that is not one is named.
 */
function withBoundsOf(
  given: Partial<BackoffPolicy>,
  fallback: BackoffPolicy,
  option: string,
): BackoffPolicy {
  const backoff = { ...fallback, ...given };
  if (given.initialMs !== undefined && given.maxMs === undefined) {
    const initialMs = durationMs(`${option}.initialMs`, given.initialMs);
    if (initialMs > fallback.maxMs) backoff.maxMs = initialMs;
  } else if (given.maxMs !== undefined && given.initialMs === undefined) {
    const maxMs = durationMs(`${option}.maxMs`, given.maxMs);
    if (maxMs < fallback.initialMs) backoff.initialMs = maxMs;
  }
  return backoff;
}

/** The fields whose value is not undefined: an undefined one sets nothing, so keeps the default. */
function defined(backoff: Partial<BackoffPolicy>): Partial<BackoffPolicy> {
  return Object.fromEntries(Object.entries(backoff).filter(([, v]) => v !== undefined));
}
