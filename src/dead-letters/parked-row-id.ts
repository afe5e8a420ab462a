/** The largest id a parked row can have: its column is a bigint. */
const MAX_ROW_ID = 2n ** 63n - 1n;

/**
 * Whether `id` can name a parked row: decimal digits within the bigint range. One above it
 * reached Postgres, which failed the statement (22003) instead of an error of outboxkit's.
 */
export function isParkedRowId(id: string): boolean {
  return /^\d{1,19}$/.test(id) && BigInt(id) <= MAX_ROW_ID;
}
