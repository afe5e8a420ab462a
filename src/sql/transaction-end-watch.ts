import { NotInTransactionError, TRANSACTION_ENDING } from '../errors/not-in-transaction-error.js';
import { transactionControl } from './transaction-control.js';

/**
 * Whether a connection's transaction has been told to end. Kysely, pg and the ORMs say that a
 * transaction has ended only once its COMMIT or ROLLBACK has been answered; a write started
 * before that, and not awaited by the code that ends the transaction, reaches the connection
 * after the COMMIT or ROLLBACK and commits on its own: a message for a transaction that rolled
 * back. The writer watches the statements of each connection it writes on, from the first time
 * it sees it (a pool's connections serve many transactions), and the connection refuses the
 * writer's statement once one of them ended the transaction, until the next one begins.
 */

/** A connection's method that sends a statement: Kysely's `executeQuery`, pg's `query`. */
type SendMethod = 'executeQuery' | 'query';
type Send = (statement: unknown, ...rest: unknown[]) => unknown;

const WATCHER = Symbol('outboxkit.transactionEndWatch');
const ended = new WeakMap<object, boolean>();

/** A write on its way to a connection, which refuses it if it comes after the end. */
interface PendingWrite {
  readonly statement: unknown;
  refused: boolean;
}
const pending = new WeakMap<object, PendingWrite[]>();

/** What a send method was given as the statement: pg's text or config, Kysely's `{ sql }`. */
function sqlOf(statement: unknown): unknown {
  if (typeof statement !== 'object' || statement === null) return statement;
  const { sql, text } = statement as { sql?: unknown; text?: unknown };
  return sql ?? text;
}

/**
 * Watches the statements `connection` sends through `method`, unless it is watched already.
 * Something else may have replaced the method since (outboxkit's consumer wraps a handler's
 * connection for its transaction, and puts back what it found): the watch is then put on again.
 */
function watch(connection: object, method: SendMethod): void {
  const target = connection as Record<string, unknown>;
  const send = target[method];
  if (typeof send !== 'function' || (send as { [WATCHER]?: true })[WATCHER]) return;
  // Not watched until now: whatever ended before is unknown, and this write is let through.
  ended.set(connection, false);
  const watched = function (this: unknown, statement: unknown, ...rest: unknown[]) {
    const sql = sqlOf(statement);
    const write = pending
      .get(connection)
      ?.find((w) => w.statement === sql || w.statement === statement);
    if (write && ended.get(connection) === true) {
      write.refused = true;
      return Promise.reject(new NotInTransactionError(TRANSACTION_ENDING));
    }
    const control = typeof sql === 'string' ? transactionControl(sql) : undefined;
    if (control) ended.set(connection, !control.begins);
    return (send as Send).call(this, statement, ...rest);
  };
  Object.defineProperty(watched, WATCHER, { value: true });
  target[method] = watched;
}

/**
 * Sends the writer's `statement` through `send`, which hands it to `connection`'s `method`,
 * at once or after a wait (an ORM's own path to its pg client). Refused with a
 * `NotInTransactionError` when a COMMIT or ROLLBACK went through `connection` first.
 */
export async function writeBeforeEnd<R>(
  connection: object,
  method: SendMethod,
  statement: unknown,
  send: () => Promise<R>,
): Promise<R> {
  watch(connection, method);
  if (ended.get(connection) === true) throw new NotInTransactionError(TRANSACTION_ENDING);
  const write: PendingWrite = { statement, refused: false };
  const writes = pending.get(connection) ?? [];
  pending.set(connection, writes);
  writes.push(write);
  try {
    return await send();
  } catch (error) {
    // An ORM may wrap the refusal in an error of its own.
    if (write.refused) throw new NotInTransactionError(TRANSACTION_ENDING, { cause: error });
    throw error;
  } finally {
    writes.splice(writes.indexOf(write), 1);
  }
}
