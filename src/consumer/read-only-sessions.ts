import { CompiledQuery } from 'kysely';
import type { RunStatement } from '../orm/joined-transaction.js';
import { settleWithin } from '../util/with-timeout.js';
import type { ClaimDeps } from './claim-transaction.js';
import { isDatabaseUnavailable } from './database-errors.js';

/**
 * Sessions ended at most per sweep: pg's default pool size. A database still read-only (a
 * standby the pool's address leads to) costs that many reconnects a sweep, no more.
 */
export const MAX_SESSIONS_ENDED = 10;

/** What a sweep of read-only sessions found. */
export interface ReadOnlySweep {
  /** Read-only sessions it ended. */
  readonly ended: number;
  /** It then got a writable session: the claim, run again, can write. */
  readonly writable: boolean;
}

type Probe = 'writable' | 'ended' | 'failed';

/**
 * Ends the read-only sessions the handlers' transactions would get, one at a time, until one
 * is writable or `MAX_SESSIONS_ENDED` were ended. A session keeps the `default_transaction_
 * read_only` it started with (an `ALTER DATABASE/ROLE ... SET` since reset) and the server it
 * reached (a standby the address led to before a failover): retried on the same pooled
 * sessions, whose retries keep them from idling out, a claim stayed refused for ever after the
 * database was writable again. Each look gets a session as the claim does (from `db`, or in an
 * ORM adapter's transaction); only one found read-only is ended, so no writable session is.
 */
export async function endReadOnlySessions(
  deps: Pick<ClaimDeps, 'db' | 'transactions' | 'consumer'>,
  stopping: AbortSignal,
): Promise<ReadOnlySweep> {
  let ended = 0;
  while (ended < MAX_SESSIONS_ENDED && !stopping.aborted) {
    // Bounded: a link that hangs must not hold up the retry loop.
    const probe = (await settleWithin(endIfReadOnly(deps), deps.consumer.timeoutMs)) ?? 'failed';
    if (probe !== 'ended') return { ended, writable: probe === 'writable' };
    ended += 1;
  }
  return { ended, writable: false };
}

/** Ends the session it gets when that one is read-only. Never rejects. */
async function endIfReadOnly(
  deps: Pick<ClaimDeps, 'db' | 'transactions' | 'consumer'>,
): Promise<Probe> {
  let back!: () => void;
  const lookEnded = new Promise<void>((resolve) => {
    back = resolve;
  });
  let ending: Promise<boolean> | undefined;
  const look = async (run: RunStatement) => {
    const { rows } = (await run(LOOK, [])) as { rows: object[] };
    const [pid, readOnly] = Object.values(rows[0] ?? {});
    if (readOnly !== 'on') return;
    // Not ended by itself: pg emits a checked-out client's lost connection as an 'error' the
    // application may not listen for, whereas the pool hears an idle one's. So another session,
    // taken while this one is held (the pool hands back the one freed last first), ends it once
    // it is back in its pool. Held a bounded time: a pool may have no other to give.
    let taken!: () => void;
    const otherTaken = new Promise<void>((resolve) => {
      taken = resolve;
    });
    ending = endSession(deps.db, Number(pid), taken, lookEnded);
    await settleWithin(otherTaken, OTHER_SESSION_WAIT_MS);
  };
  try {
    if (deps.transactions) {
      // At read committed whatever the consumer's level: a standby refuses serializable.
      await deps.transactions.run(
        {
          isolationLevel: 'read committed',
          timeoutMs: deps.consumer.timeoutMs,
          handlers: 0,
          closed: () => undefined,
        },
        (transaction) => look((text, params) => transaction.query(text, params)),
      );
    } else {
      await deps.db.connection().execute(async (connection) =>
        look(async (text, params) => {
          const result = await connection.executeQuery(CompiledQuery.raw(text, params));
          return { rows: [...result.rows] };
        }),
      );
    }
  } catch (error) {
    // A session that died meanwhile (one ended a moment ago), which its pool now drops: the
    // next look gets another.
    if (ending === undefined) return isDatabaseUnavailable(error) ? 'ended' : 'failed';
  } finally {
    back();
  }
  if (ending === undefined) return 'writable';
  return (await ending) ? 'ended' : 'failed';
}

/**
 * Ends session `pid` from another session of `db` (calling `taken` once it has one), once
 * `after` resolves, and waits for it to be gone. False when it did not: the session was in use again, the session given was `pid`
 * itself (a pool that had no other), or the statement failed.
 */
async function endSession(
  db: ClaimDeps['db'],
  pid: number,
  taken: () => void,
  after: Promise<void>,
): Promise<boolean> {
  try {
    return await db.connection().execute(async (connection) => {
      taken();
      await after;
      const result = await connection.executeQuery(CompiledQuery.raw(END_SESSION, [pid]));
      return Object.values((result.rows[0] as object | undefined) ?? {})[0] === true;
    });
  } catch {
    taken();
    return false;
  }
}

/** How long a look's session is held for another one to be taken. */
const OTHER_SESSION_WAIT_MS = 1000;

/** `on` on a standby, and under `default_transaction_read_only`. */
const LOOK =
  "SELECT pg_backend_pid() AS pid, current_setting('transaction_read_only') AS read_only";
/**
 * Only while idle: a session its pool has handed to a claim meanwhile (the look's was freed
 * last, and is handed out first) is left to fail that claim with 25006 and be looked at again.
 * Waits up to 5 s for the session to be gone, so the next look does not get it.
 */
const END_SESSION = `SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity
  WHERE pid = $1 AND state = 'idle' AND pid <> pg_backend_pid()`;
