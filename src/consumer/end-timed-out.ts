import { CompiledQuery } from 'kysely';
import { errorMessage } from '../util/logger.js';
import { settleWithin } from '../util/with-timeout.js';
import type { AnyTransaction, ClaimDeps } from './claim-transaction.js';

/** The longest wait for a free connection to cancel a timed-out handler's statement. */
const MAX_CANCEL_WAIT_MS = 5000;

/**
 * Ends a timed-out transaction without waiting for its handler: cancels the statement it may
 * be stuck in, then rolls back. Returns within `timeoutMs`; a session that has not rolled back
 * by then is terminated, and its rollback handed to `onAbandoned`.
 */
export async function endTimedOut(
  deps: ClaimDeps,
  trx: AnyTransaction,
  pid: number | undefined,
): Promise<void> {
  const { queries, consumer, logger } = deps;
  const deadline = Date.now() + consumer.timeoutMs;
  const remaining = () => Math.max(0, deadline - Date.now());
  let rollingBack = false;
  // The cancel must land before the ROLLBACK is sent: later, it could cancel the ROLLBACK, or a
  // statement of the session's next user. So it is sent only if the rollback has not begun.
  if (pid !== undefined) {
    const cancel = signalBackend(
      deps,
      queries.cancelBackend,
      pid,
      () => rollingBack,
      'could not cancel the statement of a timed-out handler',
    );
    await settleWithin(cancel, Math.min(MAX_CANCEL_WAIT_MS, remaining()));
  }
  rollingBack = true;
  let rolledBack = false;
  // A failed rollback ends the transaction too: Kysely gives the connection back either way,
  // and pg-pool drops a broken one.
  const rollback = trx
    .rollback()
    .execute()
    .catch(() => {})
    .then(() => {
      rolledBack = true;
    });
  await settleWithin(rollback, remaining());
  if (rolledBack) return;
  logger.warn('a timed-out transaction did not roll back in time; terminating its session', {
    consumer: consumer.name,
    pid,
  });
  deps.onAbandoned(rollback);
  if (pid === undefined) return;
  // Its session still holds the dedupe rows: ending it frees them. The client's 'error' event
  // that follows needs the listener the host's `db` option asks for.
  void signalBackend(
    deps,
    queries.terminateBackend,
    pid,
    () => rolledBack,
    'could not terminate the session of a timed-out transaction',
  );
}

/**
 * Sends `query` (a cancel or a terminate of session `pid`) on a connection of its own, unless
 * `tooLate()` says so once that connection is had: the wait for a free connection can outlast
 * the need, and a signal sent after that could hit the session's next user. Never rejects.
 */
function signalBackend(
  deps: ClaimDeps,
  query: string,
  pid: number,
  tooLate: () => boolean,
  failure: string,
): Promise<void> {
  const { db, consumer, logger } = deps;
  return db
    .connection()
    .execute(async (connection) => {
      if (tooLate()) return;
      await connection.executeQuery(CompiledQuery.raw(query, [pid]));
    })
    .catch((error: unknown) =>
      logger.warn(failure, { consumer: consumer.name, error: errorMessage(error) }),
    );
}
