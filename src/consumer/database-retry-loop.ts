import { OutboxkitError } from '../errors/outboxkit-error.js';
import { PRIVILEGES_DOC } from '../start/check-privileges.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import {
  type ClaimDeps,
  type ClaimOutcome,
  type ClaimTask,
  runClaimTransaction,
} from './claim-transaction.js';
import type { ConsumerStats } from './consumer-stats.js';
import {
  isDatabaseUnavailable,
  isPrivilegeRefusal,
  isReadOnlyRefusal,
  isSerializationFailure,
  isStatementNameError,
} from './database-errors.js';

/** Serialization failures and deadlocks retried in place before they count as a failed attempt. */
const MAX_SERIALIZATION_RETRIES = 10;

export type TransactionOutcome =
  | ClaimOutcome
  /** Stopping, or the channel closed: the broker gets the deliveries back. */
  | { readonly kind: 'aborted' }
  /** Postgres stayed unavailable for `databaseRetryLimitMs`. */
  | { readonly kind: 'unavailable' };

export interface DatabaseRetryOptions extends Omit<ClaimDeps, 'onAbandoned'> {
  readonly stats: Pick<ConsumerStats, 'serializationRetries' | 'databaseRetries'>;
  readonly reconnectBackoff: BackoffPolicy;
  /**
   * How long one delivery's transaction is retried in place while Postgres is unavailable to it,
   * before the delivery is handed back to the broker.
   */
  readonly databaseRetryLimitMs: number;
  /** Aborts when the host stops: waits for the database give up. */
  readonly stopping: AbortSignal;
}

/**
 * Runs a claim transaction, and runs it again, in place, when what failed was not the message:
 * at once after a serialization failure or deadlock (a few times), and with backoff while
 * Postgres is unavailable to the transaction's own statements, or its schema lacks outboxkit's
 * tables (for `databaseRetryLimitMs`). None of these counts as an attempt of the message.
 */
export class DatabaseRetryLoop {
  readonly #options: DatabaseRetryOptions;
  readonly #claim: ClaimDeps;
  /** Rollbacks of timed-out transactions given up on; the host waits for them when it stops. */
  readonly #abandoned = new Set<Promise<unknown>>();
  #waiting = 0;
  #lastError: unknown;

  constructor(options: DatabaseRetryOptions) {
    this.#options = options;
    // Its own fields and more: the claim reads only those of `ClaimDeps`.
    this.#claim = {
      ...options,
      onAbandoned: (rollback) => {
        this.#abandoned.add(rollback);
        void rollback.finally(() => this.#abandoned.delete(rollback));
      },
    };
  }

  /** Transactions now retried in place because Postgres is unavailable to them. */
  get waiting(): number {
    return this.#waiting;
  }

  /** What the latest of them failed with, while any waits: a health check names the cause. */
  get waitingError(): unknown {
    return this.#waiting > 0 ? this.#lastError : undefined;
  }

  /** Resolves once the rollbacks given up on after a time-out are over. */
  async abandonedSettled(): Promise<void> {
    await Promise.all(this.#abandoned);
  }

  /**
   * Runs `tasks` in one transaction until it commits, fails for the message's own reasons, or
   * Postgres stays away too long. `wanted` is asked after each wait for the database: false
   * (the deliveries' channels closed) ends the loop, as stopping does.
   */
  async run(tasks: readonly ClaimTask[], wanted: () => boolean): Promise<TransactionOutcome> {
    const { stats, logger, consumer, reconnectBackoff, databaseRetryLimitMs, stopping } =
      this.#options;
    let conflicts = 0;
    let outages = 0;
    let unnamedAgain = false;
    let outageSince: number | undefined;
    try {
      for (;;) {
        const outcome = await runClaimTransaction(this.#claim, tasks);
        if (outcome.kind !== 'failed') return outcome;
        const { error } = outcome;
        const names = this.#claim.statementNames;
        if (
          names !== undefined &&
          !unnamedAgain &&
          outcome.source === 'transaction' &&
          isStatementNameError(error)
        ) {
          // The session's prepared statements are not what pg believes (DISCARD ALL, or a pooler
          // that moves sessions): not the message's doing; from now on the claim goes unnamed.
          // Once per run, also for the claims that were in flight when naming went off.
          unnamedAgain = true;
          if (names.turnOff()) {
            logger.warn(
              'the claim as a prepared statement failed on this session; it is sent unnamed from now on',
              { consumer: consumer.name, error: errorMessage(error) },
            );
          }
          continue;
        }
        if (isSerializationFailure(error) && conflicts < MAX_SERIALIZATION_RETRIES) {
          conflicts += 1;
          stats.serializationRetries += 1;
          // A little jitter so the two transactions that collided do not collide again.
          await abortableDelay(Math.floor(Math.random() * 5 * conflicts));
          continue;
        }
        // Only the transaction's own statements speak for the database: a handler's error with
        // the same code (its HTTP or Redis client refused) is a failure of the handler.
        const ownStatement = outcome.source === 'transaction';
        const notMigrated = ownStatement && isNotMigrated(error);
        // The claim refused (a privilege revoked after the start checks): a GRANT mends it, and
        // no message is to blame.
        const notPermitted = ownStatement && isPrivilegeRefusal(error);
        const unavailable =
          ownStatement && (outcome.connectionLost === true || isDatabaseUnavailable(error));
        if (unavailable || notMigrated || notPermitted || outcome.neverBegan === true) {
          const now = monotonicMs();
          if (outageSince === undefined) {
            outageSince = now;
            this.#waiting += 1;
          }
          const left = outageSince + databaseRetryLimitMs - now;
          if (left <= 0) return { kind: 'unavailable' };
          outages += 1;
          stats.databaseRetries += 1;
          this.#lastError = error;
          const delay = Math.min(backoffDelay(reconnectBackoff, outages), left);
          // Not the database: the ORM or pool the handlers' transactions come from is not usable
          // (not initialized, or closed before the host stopped): an error, as a missing schema.
          const unusable = !unavailable && !notMigrated && !notPermitted;
          const log = notMigrated || notPermitted || unusable ? logger.error : logger.warn;
          log.call(
            logger,
            notMigrated
              ? "outboxkit's tables are missing; retrying the transaction"
              : notPermitted
                ? `the database role may not record the message's key; retrying the transaction (not counted as an attempt): grant what ${PRIVILEGES_DOC} lists, or, if the role has them, look for a handler's SET ROLE without LOCAL, which stays on the pooled connection`
                : unusable
                  ? "the handlers' transaction could not begin; retrying it (not counted as an attempt)"
                  : isReadOnlyRefusal(error)
                    ? 'the database is read-only (a standby, or default_transaction_read_only); retrying the transaction. A pooled session stays read-only until it is replaced: give the pool maxLifetimeSeconds'
                    : 'database unavailable; retrying the transaction',
            {
              consumer: consumer.name,
              error: errorMessage(error),
              retryInMs: delay,
              ...(isPoolExhausted(error) && { hint: POOL_EXHAUSTED_HINT }),
            },
          );
          await abortableDelay(delay, stopping);
          if (stopping.aborted || !wanted()) return { kind: 'aborted' };
          continue;
        }
        return outcome;
      }
    } finally {
      if (outageSince !== undefined) this.#waiting -= 1;
    }
  }
}

/** What pg's pool says when no connection came free within its `connectionTimeoutMillis`. */
function isPoolExhausted(error: unknown): boolean {
  return error instanceof Error && error.message === 'timeout exceeded when trying to connect';
}

/** Postgres may be fine: the pool is what waits. */
const POOL_EXHAUSTED_HINT =
  "no connection of the handlers' pool came free in time, Postgres may well be up: the pool needs more connections than the consumers' concurrency added up (docs/consumer.md), and a handler must write through ctx.trx, not hold a connection of the application's db of its own";

/** The claim found no processed-messages table (see `claimFailed`): the schema is not migrated. */
function isNotMigrated(error: unknown): boolean {
  return error instanceof OutboxkitError && error.code === 'schema-not-migrated';
}
