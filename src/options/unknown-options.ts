import { ConfigurationError } from '../errors/configuration-error.js';
import { closestName } from '../util/closest-name.js';
import { type Renames, rejectRenamedOptions } from './renamed-options.js';

/** Who takes the options, for the error: `OutboxRelay`, `the consumer "orders"`. */
export interface OptionsOwner {
  readonly owner: string;
  /** Put before the name in the error's `option`: `retry.`, `consumers[orders].`. */
  readonly prefix?: string;
  /** Old names of these options, refused naming the new one (`RENAMED_OPTIONS`). */
  readonly renames?: Renames;
  /**
   * Options of nested objects, by the key that holds them (`relay`): a name that is close to
   * none of `known` may be one of theirs put at the top (`concurency` for `relay.concurrency`).
   */
  readonly nested?: Readonly<Record<string, readonly string[]>>;
}

/**
 * Refuses a name that is none of `known`. The compiler checks the names of an object literal,
 * but not those of a spread config, a JSON file, a factory's return or JavaScript: a misspelt
 * `concurrency` would run with the default without a word. A name whose value is `undefined`
 * sets nothing and passes; one whose value is `null` is refused too (no option takes
 * `null`, and reading it as "the default" would hide a missing value from JSON or a merge).
 */
export function rejectUnknownOptions(
  options: unknown,
  known: readonly string[],
  { owner, prefix = '', renames, nested = {} }: OptionsOwner,
): void {
  if (options === null || typeof options !== 'object') return;
  if (renames) rejectRenamedOptions(options, renames);
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue;
    if (known.includes(name)) {
      if (value !== null) continue;
      throw new ConfigurationError(
        `${prefix}${name}`,
        'is null, which no option takes: leave it out (or undefined) for its default',
      );
    }
    const guess = closestName(name, known);
    const suggestion = guess
      ? `${prefix}${guess}`
      : Object.entries(nested)
          .map(([key, names]) => {
            const inner = closestName(name, names);
            return inner && `${prefix}${key}.${inner}`;
          })
          .find((found) => found);
    throw new ConfigurationError(
      `${prefix}${name}`,
      `is not an option of ${owner}${suggestion ? `; did you mean \`${suggestion}\`?` : ''} (see docs/options.md)`,
    );
  }
}
