/** Reasons an "outbox rows parked" line lists with their counts; the rest are only counted. */
const LISTED_REASONS = 5;

/**
 * The context of the relay's "outbox rows parked" line for one batch: `reason` when every row
 * was parked for the same one, else `reasons`, the rows per reason (the first few reasons; a
 * batch of rows too large for as many sizes would make a long line), and how many rows were
 * parked for reasons left out.
 */
export function parkedLogContext(reasons: readonly string[]): Record<string, unknown> {
  const counts = new Map<string, number>();
  for (const reason of reasons) counts.set(reason, (counts.get(reason) ?? 0) + 1);
  if (counts.size === 1) return { count: reasons.length, reason: reasons[0] };
  const listed = [...counts].slice(0, LISTED_REASONS);
  let unlisted = reasons.length;
  for (const [, count] of listed) unlisted -= count;
  return {
    count: reasons.length,
    reasons: Object.fromEntries(listed),
    ...(unlisted > 0 && {
      otherReasons: { reasons: counts.size - LISTED_REASONS, rows: unlisted },
    }),
  };
}
