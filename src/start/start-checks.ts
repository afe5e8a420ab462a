import { clearTimeout, setTimeout } from 'node:timers';
import type { AmqpConnection } from '../amqp/amqp-connection.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { checkPrivileges, type TablePrivilege } from './check-privileges.js';
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
  /** The privileges on outboxkit's tables the component's statements need. */
  readonly privileges?: readonly TablePrivilege[];
  /** The connection being started, whose first connect tells whether the login works. */
  readonly amqp?: AmqpConnection;
}

/**
 * Fails with a `StartupError` on a misconfiguration no retry can mend (schema not migrated or
 * too old, credentials, database or virtual host refused, a privilege the role lacks); returns when everything answered
 * well, or when a service could not be reached within `START_CHECK_TIMEOUT_MS`.
 */
export async function runStartChecks(checks: StartChecks): Promise<void> {
  const { db, schema, where, amqp, privileges = [] } = checks;
  const checkDatabase = async (pg: PgQueryable) => {
    await checkSchema(pg, schema, where);
    if (privileges.length > 0) await checkPrivileges(pg, schema, where, privileges);
  };
  await Promise.all([
    db ? bounded(checkDatabase(db)) : undefined,
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
