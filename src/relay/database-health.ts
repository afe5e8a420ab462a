import { isDatabaseUnavailable } from '../consumer/database-errors.js';
import type { OutboxkitError } from '../errors/outboxkit-error.js';
import { notMigratedError } from '../start/check-schema.js';
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

  claimed(): void {
    this.#problem = undefined;
  }

  /** A claim failed with `error`: kept when it says something about the database. */
  failed(error: unknown): void {
    const misconfigured: OutboxkitError | undefined =
      notMigratedError(error, this.#schema, 'before the relay can publish') ??
      databaseMisconfiguration(error, this.#where);
    if (misconfigured !== undefined) {
      this.#problem = { kind: 'misconfigured', error: misconfigured };
    } else if (isDatabaseUnavailable(error)) {
      this.#problem = { kind: 'unreachable', error: error as Error };
    }
  }
}
