/** Reasons (and destinations) a "parked" line lists with their counts; the rest are counted. */
const LISTED = 5;

/**
 * The context of the relay's "outbox rows parked" line for one batch: `reason` when every row
 * was parked for the same one, else `reasons`, the rows per reason (the first few reasons; a
 * batch of rows too large for as many sizes would make a long line), and how many rows were
 * parked for reasons left out; the same for where the rows were to go (`destination`,
 * "exchange routing-key"), so that an operator sees which binding is missing without a query.
 */
export function parkedLogContext(
  reasons: readonly string[],
  destinations: readonly string[] = [],
): Record<string, unknown> {
  return {
    count: reasons.length,
    ...tally('reason', reasons),
    ...(destinations.length > 0 && tally('destination', destinations)),
  };
}

/** `{ [name]: value }` when every value is the same, else the first few counted. */
function tally(name: string, values: readonly string[]): Record<string, unknown> {
  const counts = new Map<string, number>();
  for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
  if (counts.size === 1) return { [name]: values[0] };
  const listed = [...counts].slice(0, LISTED);
  let unlisted = values.length;
  for (const [, count] of listed) unlisted -= count;
  const plural = `${name}s`;
  const other = `other${plural[0]!.toUpperCase()}${plural.slice(1)}`;
  return {
    [plural]: Object.fromEntries(listed),
    ...(unlisted > 0 && { [other]: { [plural]: counts.size - LISTED, rows: unlisted } }),
  };
}
