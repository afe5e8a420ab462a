/** How messages say what `unstorableText` checks, of every string stored as text or jsonb. */
export const STORABLE_TEXT_RULE = 'without NUL or lone surrogates';

/**
 * Why Postgres cannot store `value` as given in a text or jsonb column, as a phrase, or
 * undefined when it can. It stores no U+0000 (the statement fails, aborting its transaction),
 * and turns a lone surrogate into U+FFFD or refuses it, so that two different strings could
 * become one.
 */
export function unstorableText(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains NUL (U+0000), which Postgres text cannot store';
  if (!(value as unknown as WellFormedCheck).isWellFormed()) {
    return 'is not well-formed Unicode (a lone surrogate), which Postgres would store as U+FFFD';
  }
  return undefined;
}

/** `String.prototype.isWellFormed` (Node 20+), not in the ES2023 lib the build targets. */
interface WellFormedCheck {
  isWellFormed(): boolean;
}
