import { isDatabaseUnavailable } from '../consumer/database-errors.js';
import type { OutboxkitError } from '../errors/outboxkit-error.js';
import { relaySchemaError } from '../start/check-schema.js';
import { databaseMisconfiguration } from '../start/misconfiguration.js';

/**
 * What keeps the relay from its database, as its last claim found it: `unreachable` (down, a
 * connection lost or refused) or `misconfigured` (a schema not migrated, a login or database
 * refused), which no retry mends. Found by the claims, so also when the database was down at
 * start and the start checks could not look.
 */
export interface RelayDatabaseProblem {
  readonly kind: 'unreachable' | 'misconfigured';
  readonly error: Error;
}

/** The lanes' shared view of the database: set by a failed claim, cleared by the next claim that works. */
export class DatabaseHealth {
  readonly #schema: string;
  readonly #where: string;
  #problem: RelayDatabaseProblem | undefined;

  constructor(schema: string, where: string) {
    this.#schema = schema;
    this.#where = where;
  }

  get problem(): RelayDatabaseProblem | undefined {
    return this.#problem;
  }

  /** A claim worked. Returns the problem it ends, if there was one. */
  claimed(): RelayDatabaseProblem | undefined {
    const ended = this.#problem;
    this.#problem = undefined;
    return ended;
  }

  /**
   * A claim failed with `error`: kept when it says something about the database. Returns
   * whether it is news: false for a database problem of the kind already known (another lane
   * found it first, or this lane retried), which the lanes then log only at debug level.
   */
  failed(error: unknown): boolean {
    const misconfigured: OutboxkitError | undefined =
      relaySchemaError(error, this.#schema, 'before the relay can publish') ??
      databaseMisconfiguration(error, this.#where);
    const kind = misconfigured
      ? 'misconfigured'
      : isDatabaseUnavailable(error)
        ? 'unreachable'
        : undefined;
    if (kind === undefined) return true;
    const known = this.#problem?.kind === kind;
    this.#problem = { kind, error: misconfigured ?? (error as Error) };
    return !known;
  }
}
