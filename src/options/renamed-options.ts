import { ConfigurationError } from '../errors/configuration-error.js';

/** Old option name → what to write instead, for options renamed in 0.2. */
export type Renames = Readonly<Record<string, string>>;

/**
 * Options renamed in 0.2 ("Options: one name per concept" in CHANGELOG.md), per receiver. An
 * old name would otherwise be ignored without a word, and its setting silently lost.
 */
export const RENAMED_OPTIONS = Object.freeze({
  writer: { maxPayloadBytes: 'maxMessageBytes' },
  relay: {
    maxPayloadBytes: 'maxMessageBytes',
    maxAttempts: 'retry: { maxAttempts }',
    retryBackoff: 'retry: { backoff }',
  },
  module: { maxPayloadBytes: 'maxMessageBytes' },
  dashboard: { db: 'pool', readOnly: 'allowReplay (its opposite; default false)' },
  parkedMessages: { db: 'pool' },
  metrics: { db: 'pool' },
} satisfies Record<string, Renames>);

/**
 * Throws a `ConfigurationError` naming the new option when `options` uses an old name. Cheap:
 * one property lookup per renamed option.
 */
export function rejectRenamedOptions(options: unknown, renames: Renames): void {
  if (options === null || typeof options !== 'object') return;
  for (const [old, now] of Object.entries(renames)) {
    if (Object.hasOwn(options, old) && (options as Record<string, unknown>)[old] !== undefined) {
      throw new ConfigurationError(old, `was renamed in outboxkit 0.2: use \`${now}\``);
    }
  }
}
