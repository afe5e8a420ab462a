import { setTimeout } from 'node:timers';
import { CompiledQuery } from 'kysely';
import { backoffDelay } from '../util/backoff.js';
import { errorMessage } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { settleWithin } from '../util/with-timeout.js';
import type { AnyTransaction, ClaimDeps } from './claim-transaction.js';

/** The longest wait for a free connection to cancel a timed-out handler's statement. */
const MAX_CANCEL_WAIT_MS = 5000;

/**
 * Ends a timed-out (or stopped) transaction without waiting for its handler: cancels the
 * statement it may be stuck in, then rolls back. Returns within `timeoutMs`; a session that has
 * not rolled back by then is terminated, and its rollback handed to `onAbandoned`. `claimedAt`:
 * when its claim had returned, a time its transaction had begun by (`monotonicMs()`, as
 * every time here: ages and deadlines must not move with the wall clock).
 */
export async function endTimedOut(
  deps: ClaimDeps,
  trx: AnyTransaction,
  pid: number | undefined,
  claimedAt: number,
): Promise<void> {
  const deadline = monotonicMs() + deps.consumer.timeoutMs;
  await cancelTimedOut(deps, pid, deadline);
  // A failed rollback ends the transaction too: Kysely gives the connection back either way,
  // and pg-pool drops a broken one.
  await awaitRollback(deps, trx.rollback().execute(), pid, deadline, claimedAt);
}

/**
 * Cancels the statement a timed-out handler's session `pid` may be stuck in, waiting for a free
 * connection at most until `deadline` (and 5 s). Call it before the ROLLBACK is sent: the cancel
 * is not sent once this resolves, since later it could cancel the ROLLBACK, or a statement of
 * the session's next user.
 */
export async function cancelTimedOut(
  deps: ClaimDeps,
  pid: number | undefined,
  deadline: number,
): Promise<void> {
  if (pid === undefined) return;
  let rollingBack = false;
  const cancel = signalBackend(deps, deps.queries.cancelBackend, [pid], () => rollingBack).then(
    (outcome) => {
      if (outcome === undefined) return;
      deps.logger.warn('could not cancel the statement of a timed-out handler', {
        consumer: deps.consumer.name,
        error: errorMessage(outcome.error),
      });
    },
  );
  await settleWithin(cancel, Math.min(MAX_CANCEL_WAIT_MS, Math.max(0, deadline - monotonicMs())));
  rollingBack = true;
}

/**
 * Waits for the rollback of a timed-out transaction until `deadline`; a session that has not
 * rolled back by then is terminated, and its rollback handed to `onAbandoned`.
 */
export async function awaitRollback(
  deps: ClaimDeps,
  rollback: Promise<unknown>,
  pid: number | undefined,
  deadline: number,
  claimedAt: number,
): Promise<void> {
  const { queries, consumer, logger } = deps;
  let rolledBack = false;
  const settled = rollback
    .catch(() => {})
    .then(() => {
      rolledBack = true;
    });
  await settleWithin(settled, Math.max(0, deadline - monotonicMs()));
  if (rolledBack) return;
  logger.warn('a timed-out transaction did not roll back in time; terminating its session', {
    consumer: consumer.name,
    pid,
  });
  deps.onAbandoned(settled);
  if (pid === undefined) return;
  // Its session still holds the dedupe rows: ending it frees them. The client's 'error' event
  // that follows needs the listener the host's `db` option asks for. Its transaction began
  // before its claim returned: a later session on the same pid is spared. (Not worked back from
  // `deadline`: a handler given up at a stop ran for less than `timeoutMs`.)
  void terminateSession(deps, queries.terminateBackend, pid, claimedAt, () => rolledBack);
}

/**
 * How long a timed-out session's terminate is retried while no connection can be had. Its
 * session holds the message's key until it ends, and Postgres may not notice a dead link for
 * hours (TCP keepalive): every retry of the message would wait for the key and time out, and
 * be dead-lettered with its effect never applied.
 */
const TERMINATE_RETRY_MS = 10 * 60_000;
const TERMINATE_BACKOFF = { initialMs: 100, maxMs: 5_000 } as const;

/**
 * Terminates session `pid`, again and again while Postgres cannot be reached (an outage that
 * froze the session's link often refuses new connections too), until it is sent, the rollback
 * came back, or `TERMINATE_RETRY_MS` passed. Warns on the first failure and when giving up.
 */
async function terminateSession(
  deps: ClaimDeps,
  query: string,
  pid: number,
  began: number,
  rolledBack: () => boolean,
): Promise<void> {
  const { consumer, logger } = deps;
  const giveUpAt = monotonicMs() + TERMINATE_RETRY_MS;
  for (let failures = 1; ; failures += 1) {
    // Only a session whose transaction is at least this old is ours (see terminateBackend). On
    // the monotonic clock: with the wall clock stepped forward the age outgrew the session and
    // its key stayed held; stepped back, it could shrink to 0 and spare a later session nothing.
    const outcome = await signalBackend(
      deps,
      query,
      [pid, Math.max(0, monotonicMs() - began)],
      rolledBack,
    );
    if (outcome === undefined) return;
    const failed = outcome.error;
    if (failures === 1) {
      logger.warn('could not terminate the session of a timed-out transaction; retrying', {
        consumer: consumer.name,
        pid,
        error: errorMessage(failed),
      });
    }
    if (monotonicMs() >= giveUpAt) {
      logger.error('gave up terminating the session of a timed-out transaction', {
        consumer: consumer.name,
        pid,
        error: errorMessage(failed),
      });
      return;
    }
    // Unref'd: a process that is done otherwise (its host stopped) need not wait for this.
    await new Promise((resolve) =>
      setTimeout(resolve, backoffDelay(TERMINATE_BACKOFF, failures)).unref(),
    );
  }
}

/**
 * Sends `query` (a cancel or a terminate of a session) on a connection of its own, unless
 * `tooLate()` says so, before or once that connection is had: the wait for a free connection
 * can outlast the need, and a signal sent after that could hit the session's next user.
 * Resolves with the error when it could not be sent, else undefined; never rejects.
 */
async function signalBackend(
  deps: ClaimDeps,
  query: string,
  params: readonly unknown[],
  tooLate: () => boolean,
): Promise<{ readonly error: unknown } | undefined> {
  if (tooLate()) return undefined;
  try {
    await deps.db.connection().execute(async (connection) => {
      if (tooLate()) return;
      await connection.executeQuery(CompiledQuery.raw(query, [...params]));
    });
    return undefined;
  } catch (error) {
    return { error };
  }
}
