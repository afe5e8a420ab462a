import type pg from 'pg';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { tlsAdvice, tlsFailure } from '../errors/tls-failure.js';
import type { TlsOptions } from '../options/tls-options.js';
import { createPool } from '../sql/create-pool.js';
import { notMigratedError } from '../start/check-schema.js';
import { errorMessage, redactUrl, silentLogger } from '../util/logger.js';
import { cliDatabaseTlsConfig } from './cli-tls.js';

/**
 * Runs `work` with a small pool on `database` (its URL and TLS settings) and always ends the pool, so a one-shot command exits
 * as soon as it is done. Errors come back with the (redacted) URL, and a missing table with
 * the advice to migrate first; outboxkit's own errors come back as they are.
 */
export async function withPool<T>(
  database: { readonly url: string; readonly tls?: TlsOptions | undefined },
  schema: string,
  work: (pool: pg.Pool) => Promise<T>,
): Promise<T> {
  const { url, tls } = database;
  // A one-shot command reports what fails through the statement that fails: nothing to log.
  const pool = createPool(
    {
      connectionString: url,
      max: 2,
      application_name: 'outboxkit-cli',
      ...cliDatabaseTlsConfig(url, tls),
    },
    silentLogger,
  );
  try {
    return await work(pool);
  } catch (error) {
    const notMigrated = notMigratedError(error, schema, 'first');
    if (notMigrated) throw notMigrated;
    // outboxkit's own errors (a dead letter not found, a refused replay) say what they are
    // about; "Postgres at <url>" would make them read like a connection failure.
    if (error instanceof OutboxkitError) throw error;
    const tls = tlsFailure(error);
    throw new OutboxkitError(
      'database-failed',
      `Postgres at ${redactUrl(url)}: ${tls ? `TLS failed: ${tls.reason} (${tls.code}): ${tlsAdvice(tls, 'databaseTls')}` : errorMessage(error)}`,
      {
        cause: error,
      },
    );
  } finally {
    await pool.end().catch(() => {});
  }
}
