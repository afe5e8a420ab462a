/** SQLSTATEs after which the same transaction, run again, can succeed. */
const RETRYABLE_STATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

/**
 * SQLSTATEs of a session whose prepared statements are not what its pg client believes:
 * invalid_sql_statement_name (a name it lost: DISCARD ALL) and duplicate_prepared_statement (a
 * name another client prepared on a session a pooler handed over).
 */
const STATEMENT_NAME_STATES = new Set(['26000', '42P05']);

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
  // Prisma's driver adapter, for a connection lost in a transaction (its error has no code).
  'Server has closed the connection',
];

function sqlState(error: unknown): string | undefined {
  return sqlStateOf(error);
}

/** A serialization failure or deadlock: run the whole transaction again. */
export function isSerializationFailure(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && RETRYABLE_STATES.has(code);
}

/** A named statement the session lost, or holds from another client: see `StatementNames`. */
export function isStatementNameError(error: unknown): boolean {
  const code = sqlState(error);
  return code !== undefined && STATEMENT_NAME_STATES.has(code);
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
    // 08: connection exception; 57P01-3: shutdown or crash; 53300: too many connections;
    // 25006: read-only transaction, which the claim's INSERT meets on a standby (a pool left on
    // the old primary after a failover, or given a replica's address): not the message's fault.
    if (
      code.startsWith('08') ||
      code === '57P01' ||
      code === '57P02' ||
      code === '57P03' ||
      code === '53300' ||
      code === '25006'
    ) {
      return true;
    }
    if (isHotStandbyRefusal(code, error)) return true;
  }
  const message = error instanceof Error ? error.message : '';
  if (CONNECTION_MESSAGES.some((m) => message.includes(m))) return true;
  // Drizzle wraps the driver's error, code and message, in a `DrizzleQueryError`.
  const wrapped = error as { constructor?: { name?: unknown }; cause?: unknown } | null;
  return wrapped?.constructor?.name === 'DrizzleQueryError' && isDatabaseUnavailable(wrapped.cause);
}

/** Prisma's codes for a database it cannot reach or a connection it lost or could not get. */
const PRISMA_UNAVAILABLE: Readonly<Record<string, string>> = {
  P1001: '08001', // can't reach the database server
  P1002: '08001', // the server was reached but timed out
  P1017: '08006', // the server closed the connection
  P2024: '08001', // timed out fetching a connection from the pool
};

/**
 * The SQLSTATE of a database error: pg's `code` (which Kysely, Knex and TypeORM pass on), the
 * code of the pg error a Drizzle `DrizzleQueryError` wraps, or, for a Prisma error, the code of
 * the driver's error in its `meta` (a connection Prisma could not make or lost reads as a
 * connection exception, class 08).
 */
export function sqlStateOf(error: unknown): string | undefined {
  const e = error as {
    code?: unknown;
    cause?: unknown;
    meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; code?: unknown } } };
  } | null;
  const code = e?.code;
  if (typeof code === 'string' && /^P\d{4}$/.test(code) && e?.meta !== undefined) {
    const cause = e.meta?.driverAdapterError?.cause;
    const original = cause?.originalCode ?? cause?.code;
    if (typeof original === 'string') return original;
    // A raw query's failure without a driver adapter: the SQLSTATE is the meta's own code.
    const raw = (e.meta as { code?: unknown }).code;
    if (code === 'P2010' && typeof raw === 'string' && /^[0-9A-Z]{5}$/.test(raw)) return raw;
    return PRISMA_UNAVAILABLE[code] ?? code;
  }
  if (typeof code === 'string') return code;
  // Drizzle leaves `name` at 'Error'.
  if (e?.constructor?.name === 'DrizzleQueryError') return sqlStateOf(e.cause);
  return undefined;
}

/** SQLSTATE read_only_sql_transaction. */
const READ_ONLY_TRANSACTION = '25006';

/**
 * A write refused because the session is read-only: it reached a standby, or began under
 * `default_transaction_read_only`. The database is up; its sessions take no writes.
 */
export function isReadOnlyRefusal(error: unknown): boolean {
  const code = sqlStateOf(error);
  return code === READ_ONLY_TRANSACTION || isHotStandbyRefusal(code, error);
}

/**
 * A standby refusing a serializable transaction (`0A000`, feature not supported, "cannot use
 * serializable mode in a hot standby"), which a consumer at `serializable` meets at its BEGIN
 * where another meets 25006 at its claim: the session's server, not the message.
 */
function isHotStandbyRefusal(code: string | undefined, error: unknown): boolean {
  return code === '0A000' && error instanceof Error && error.message.includes('hot standby');
}

/** SQLSTATE insufficient_privilege. */
const INSUFFICIENT_PRIVILEGE = '42501';

/** Postgres refused a statement for want of a privilege: only a GRANT mends it. */
export function isPrivilegeRefusal(error: unknown): boolean {
  return sqlStateOf(error) === INSUFFICIENT_PRIVILEGE;
}
