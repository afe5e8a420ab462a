import type { AmqpConnection } from '../amqp/amqp-connection.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { checkSchema } from './check-schema.js';
import { brokerMisconfiguration } from './misconfiguration.js';

/**
 * How long start waits for the checks. A service that has not answered by then is taken as
 * down, not misconfigured: start goes on and the connections are made in the background.
 */
export const START_CHECK_TIMEOUT_MS = 5_000;

export interface StartChecks {
  /** The outbox database, to check the schema version and the login. */
  readonly db?: PgQueryable;
  readonly schema: string;
  /** The redacted database URL, or what the pool is, for messages. */
  readonly where: string;
  /** The connection being started, whose first connect tells whether the login works. */
  readonly amqp?: AmqpConnection;
}

/**
 * Fails with a `StartupError` on a misconfiguration no retry can mend (schema not migrated or
 * too old, credentials, database or virtual host refused); returns when everything answered
 * well, or when a service could not be reached within `START_CHECK_TIMEOUT_MS`.
 */
export async function runStartChecks(checks: StartChecks): Promise<void> {
  const { db, schema, where, amqp } = checks;
  await Promise.all([
    db ? bounded(checkSchema(db, schema, where)) : undefined,
    amqp
      ? bounded(amqp.firstAttempt()).then((attempt) => {
          const misconfigured =
            attempt?.error && brokerMisconfiguration(attempt.error, attempt.url);
          if (misconfigured) throw misconfigured;
        })
      : undefined,
  ]);
}

/** Resolves with the check's result, or undefined once the bound passes; rejections pass through. */
export async function bounded<T>(check: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), START_CHECK_TIMEOUT_MS);
  });
  try {
    return await Promise.race([check, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
