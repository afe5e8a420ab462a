/**
 * Rows a lane's first claim asks for, before it has seen how large the messages are; each claim
 * after it is sized from the one before (`nextClaimLimit`).
 */
export const FIRST_CLAIM_LIMIT = 64;

/**
 * Rows the next claim may take so that it holds at most `maxBatchBytes` of payload if its
 * messages are no larger than the largest of the last claim: `batchSize` with small messages, a
 * few with large ones, never less than one. Sizes are not known before the rows are read, and a
 * claim that summed them in SQL would cost every batch to guard against a sudden jump in size.
 */
export function nextClaimLimit(
  payloadSizes: Iterable<number>,
  batchSize: number,
  maxBatchBytes: number,
): number {
  let largest = 1;
  for (const size of payloadSizes) if (size > largest) largest = size;
  return Math.max(1, Math.min(batchSize, Math.floor(maxBatchBytes / largest)));
}
