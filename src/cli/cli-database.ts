import pg from 'pg';
import { errorMessage, redactUrl } from '../util/logger.js';

/** A Postgres error code: the table or view does not exist. */
const UNDEFINED_TABLE = '42P01';

/**
 * Runs `work` with a small pool on `url` and always ends the pool, so a one-shot command exits
 * as soon as it is done. Errors come back with the (redacted) URL, and a missing table with
 * the advice to migrate first.
 */
export async function withPool<T>(
  url: string,
  schema: string,
  work: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 2,
    // Without it an unreachable host leaves the command hanging for the OS's TCP timeout.
    connectionTimeoutMillis: 10_000,
    application_name: 'outboxkit-cli',
  });
  pool.on('error', () => {});
  try {
    return await work(pool);
  } catch (error) {
    if ((error as { code?: unknown }).code === UNDEFINED_TABLE) {
      throw new Error(
        `schema ${JSON.stringify(schema)} has no outboxkit tables: run \`outboxkit migrate --schema ${shellWord(schema)}\` first`,
        { cause: error },
      );
    }
    throw new Error(`Postgres at ${redactUrl(url)}: ${errorMessage(error)}`, { cause: error });
  } finally {
    await pool.end().catch(() => {});
  }
}

/** Quotes a word for a POSIX shell when it needs it, so printed advice can be pasted. */
function shellWord(word: string): string {
  return /^[\w.-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
