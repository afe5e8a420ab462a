/** A statement cut at its `$n` parameters: `texts[i]` comes before `values[i]`, one text more. */
export interface StatementParts {
  readonly texts: readonly string[];
  readonly values: readonly unknown[];
}

/**
 * Cuts a statement with positional parameters (`$1`, `$2`) for a query builder that numbers
 * its own (Drizzle's `sql.param`, Knex's `?`). A parameter used twice is bound twice.
 */
export function splitPositional(text: string, params: readonly unknown[]): StatementParts {
  const texts: string[] = [];
  const values: unknown[] = [];
  let last = 0;
  for (const match of text.matchAll(/\$(\d+)/g)) {
    const index = Number(match[1]) - 1;
    if (index < 0 || index >= params.length) {
      throw new RangeError(`${match[0]} has no parameter: ${params.length} were given`);
    }
    texts.push(text.slice(last, match.index));
    values.push(params[index]);
    last = match.index + match[0].length;
  }
  texts.push(text.slice(last));
  return { texts, values };
}
