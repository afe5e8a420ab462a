import type { Pool } from 'pg';
import { ConfigurationError } from '../errors/configuration-error.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/** The protocols pg reads as a connection URL; anything else it takes for a path on `base`. */
const POSTGRES_PROTOCOLS = ['postgres:', 'postgresql:'];

/**
 * `value` if it looks like a pg `Pool` (`connect` and `query` functions), else a
 * `ConfigurationError` naming `option`. A URL string or `{}` would otherwise be accepted and
 * fail at every statement, in the background, for as long as the process runs.
 */
export function pgPool(option: string, value: unknown): Pool {
  const pool = value as { connect?: unknown; query?: unknown } | null;
  if (
    pool === null ||
    typeof pool !== 'object' ||
    typeof pool.connect !== 'function' ||
    typeof pool.query !== 'function'
  ) {
    throw new ConfigurationError(
      option,
      `must be a pg Pool, got ${describe(value)}${typeof value === 'string' ? ' (a connection string goes in `databaseUrl`)' : ''}`,
    );
  }
  refuseEndedPool(option, value as Pool);
  return value as Pool;
}

/**
 * Refuses a pg Pool whose `end()` was called: every statement on it fails at once, and a relay
 * would take that for a database that is down and retry for as long as the process runs.
 */
function refuseEndedPool(option: string, pool: Pool): void {
  const { ending, ended } = pool as { ending?: unknown; ended?: unknown };
  if (ending === true || ended === true) {
    throw new ConfigurationError(
      option,
      'has been ended (its end() was called): give a pool that is open, and end it after stopping what uses it',
    );
  }
}

/** `value` if it can run a statement (a pg Pool or client: a `query` function), else refused. */
export function pgQueryable(option: string, value: unknown): PgQueryable {
  const db = value as { query?: unknown } | null;
  if (db === null || typeof db !== 'object' || typeof db.query !== 'function') {
    throw new ConfigurationError(option, `must be a pg Pool or client, got ${describe(value)}`);
  }
  return value as PgQueryable;
}

/**
 * `value` if it is a postgres:// or postgresql:// URL (what the CLI's `--database-url` takes),
 * else refused. pg reads any other text as a path relative to `postgres://base`: a keyword
 * string (`host=db dbname=app`) or a typo would connect to a host named "base", forever.
 */
export function postgresUrl(option: string, value: unknown): string {
  const example = 'such as postgres://user:password@host:5432/database';
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigurationError(
      option,
      `must be a Postgres connection URL (${example}), got ${describe(value)}`,
    );
  }
  // By its scheme only: pg also reads forms a WHATWG URL refuses, such as a Unix socket as the
  // host parameter (`postgresql://user:pw@/db?host=/cloudsql/project:region:instance`) and
  // `socket:/var/run/postgresql?db=app`.
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value)?.[1]?.toLowerCase();
  if (scheme === 'socket') return value;
  if (
    scheme === undefined ||
    !POSTGRES_PROTOCOLS.includes(`${scheme}:`) ||
    !/^[a-z]+:\/\//i.test(value)
  ) {
    throw new ConfigurationError(
      option,
      `must be a postgres:// or postgresql:// URL (${example})${scheme ? `, not ${scheme}:` : ''}`,
    );
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return 'a string';
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object without connect() and query()';
  return String(value);
}
