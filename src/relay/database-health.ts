import { isDatabaseUnavailable, isReadOnlyRefusal } from '../consumer/database-errors.js';
import type { OutboxkitError } from '../errors/outboxkit-error.js';
import { relaySchemaError } from '../start/check-schema.js';
import { databaseMisconfiguration } from '../start/misconfiguration.js';
import { monotonicMs } from '../util/monotonic-clock.js';

/**
 * What keeps the relay from its database, as its last claim found it: `unreachable` (down, a
 * connection lost or refused), `read-only` (reached, but it takes no writes: a standby the
 * address leads to, or `default_transaction_read_only`), or `misconfigured` (a schema not
 * migrated, a login or database refused), which no retry mends. Found by the claims, so also
 * when the database was down at start and the start checks could not look.
 */
export interface RelayDatabaseProblem {
  readonly kind: 'unreachable' | 'read-only' | 'misconfigured';
  readonly error: Error;
}

/**
 * The lanes' shared view of the database: set by a failed batch, cleared by the next claim or
 * settle that works. While settles fail, only a settle that works ends the lanes' shared backoff.
 */
export class DatabaseHealth {
  readonly #schema: string;
  readonly #where: string;
  #problem: RelayDatabaseProblem | undefined;
  /** Failed batches of every lane since the last that worked: the lanes' shared backoff step. */
  #failures = 0;
  /**
   * A settle failed since the last that worked. Its rows went back to the outbox, published: a
   * claim that works then proves nothing, and another lane's would publish them again at once.
   */
  #settleFailing = false;
  /** After a failed settle, no lane claims before this (monotonic ms). */
  #claimsHeldUntil = 0;

  constructor(schema: string, where: string) {
    this.#schema = schema;
    this.#where = where;
  }

  get problem(): RelayDatabaseProblem | undefined {
    return this.#problem;
  }

  /** How many batches failed, over all lanes, since one last worked: a lane's backoff step. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * How long lanes wait before they claim: after a failed settle, its backoff, for every lane.
   * Its rows went back to the outbox published, and the next claim publishes them again.
   */
  get claimsHeldMs(): number {
    return Math.max(0, this.#claimsHeldUntil - monotonicMs());
  }

  /**
   * A settle failed: holds every lane's claims for `delayMs` (see `claimsHeldMs`). Called
   * before its ROLLBACK makes the rows claimable again.
   */
  holdClaims(delayMs: number): void {
    this.#settleFailing = true;
    this.#claimsHeldUntil = Math.max(this.#claimsHeldUntil, monotonicMs() + delayMs);
  }

  /**
   * A claim worked. Returns the problem it ends, if there was one. While settles fail, the
   * lanes' shared backoff step stays: a claim that works proves nothing of them.
   */
  claimed(): RelayDatabaseProblem | undefined {
    if (!this.#settleFailing) this.#failures = 0;
    const ended = this.#problem;
    this.#problem = undefined;
    return ended;
  }

  /** A batch settled and committed. */
  settled(): void {
    this.#failures = 0;
    this.#settleFailing = false;
    this.#claimsHeldUntil = 0;
    this.#problem = undefined;
  }

  /**
   * A batch failed with `error`: kept when it says something about the database.
   * Returns whether it is news: false for a database problem of the kind already known (another
   * lane found it first, or this lane retried), which the lanes then log only at debug level.
   */
  failed(error: unknown): boolean {
    this.#failures += 1;
    const misconfigured: OutboxkitError | undefined =
      relaySchemaError(error, this.#schema, 'before the relay can publish') ??
      databaseMisconfiguration(error, this.#where);
    const kind = misconfigured
      ? 'misconfigured'
      : isReadOnlyRefusal(error)
        ? 'read-only'
        : isDatabaseUnavailable(error)
          ? 'unreachable'
          : undefined;
    if (kind === undefined) return true;
    const known = this.#problem?.kind === kind;
    this.#problem = { kind, error: misconfigured ?? (error as Error) };
    return !known;
  }
}
