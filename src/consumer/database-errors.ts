/** SQLSTATEs after which the same transaction, run again, can succeed. */
const RETRYABLE_STATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

/** Node socket errors and pg's own messages for a connection that is gone. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'not queryable',
  'timeout exceeded when trying to connect',
  'Connection ended',
];

function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A serialization failure or deadlock: run the whole transaction again. */
export function isSerializationFailure(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && RETRYABLE_STATES.has(code);
}

/**
 * The error says the database could not be reached or went away. The codes are Node's socket
 * errors, which any client throws (an HTTP or Redis client's ECONNREFUSED looks the same), so
 * the consumer asks only about errors of its transaction's own statements (BEGIN, the claim,
 * COMMIT, ROLLBACK), never about what a handler threw: see `FailureSource`.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = sqlState(error);
  if (code !== undefined) {
    if (CONNECTION_CODES.has(code)) return true;
    // 08: connection exception; 57P01-3: shutdown or crash; 53300: too many connections.
    if (
      code.startsWith('08') ||
      code === '57P01' ||
      code === '57P02' ||
      code === '57P03' ||
      code === '53300'
    ) {
      return true;
    }
  }
  const message = error instanceof Error ? error.message : '';
  return CONNECTION_MESSAGES.some((m) => message.includes(m));
}
