import { NotInTransactionError, TRANSACTION_ENDING } from '../errors/not-in-transaction-error.js';

/**
 * Whether a connection's transaction has been told to end. Kysely, pg and the ORMs say that a
 * transaction has ended only once its COMMIT or ROLLBACK has been answered; a write started
 * before that, and not awaited by the code that ends the transaction, reaches the connection
 * after the COMMIT or ROLLBACK and commits on its own: a message for a transaction that rolled
 * back. The writer watches the statements of each connection it writes on, from the first time
 * it sees it (a pool's connections serve many transactions), and refuses to write once one of
 * them ended the transaction, until the next one begins.
 */

/** A connection's method that sends a statement: its text is its first argument or its `sql`. */
type Send = (statement: unknown, ...rest: unknown[]) => unknown;

const ENDS = /^\s*(COMMIT|END|ABORT|ROLLBACK(?!\s+TO\b)(?!\s+PREPARED\b)|PREPARE\s+TRANSACTION)\b/i;
const BEGINS = /^\s*(BEGIN|START\s+TRANSACTION)\b/i;

const WATCHER = Symbol('outboxkit.transactionEndWatch');
const ended = new WeakMap<object, boolean>();

/** A write that its connection refuses if it comes after the end (`sendWriteWatched`). */
interface ExpectedWrite {
  readonly text: string;
  refused: boolean;
}
const expected = new WeakMap<object, ExpectedWrite[]>();

/** The text of a statement as pg (`query(text | { text })`) or Kysely (`{ sql }`) takes it. */
function statementText(statement: unknown): string | undefined {
  if (typeof statement === 'string') return statement;
  if (typeof statement !== 'object' || statement === null) return undefined;
  const { sql, text } = statement as { sql?: unknown; text?: unknown };
  const value = sql ?? text;
  return typeof value === 'string' ? value : undefined;
}

/**
 * Starts watching the statements `connection` sends through its method `method` (Kysely's
 * `executeQuery`, pg's `query`), unless already watched. Something else may have replaced the
 * method since (outboxkit's consumer wraps a handler's connection for its transaction, and puts
 * back what it found): the watch is then put on again.
 */
export function watchTransactionEnd(connection: object, method: 'executeQuery' | 'query'): void {
  const target = connection as Record<string, unknown>;
  const send = target[method];
  if (typeof send !== 'function' || (send as { [WATCHER]?: true })[WATCHER]) return;
  // Not watched until now: whatever ended before is unknown, and this write is let through.
  ended.set(connection, false);
  const watched = function (this: unknown, statement: unknown, ...rest: unknown[]) {
    const text = statementText(statement);
    if (text !== undefined) {
      const writes = expected.get(connection);
      const write = writes?.find((w) => w.text === text);
      if (write && ended.get(connection) === true) {
        write.refused = true;
        return Promise.reject(new NotInTransactionError(TRANSACTION_ENDING));
      }
      if (ENDS.test(text)) ended.set(connection, true);
      else if (BEGINS.test(text)) ended.set(connection, false);
    }
    return (send as Send).call(this, statement, ...rest);
  };
  Object.defineProperty(watched, WATCHER, { value: true });
  target[method] = watched;
}

/** Whether a statement that ends the transaction went through `connection` since it began. */
export function transactionEndSent(connection: object): boolean {
  return ended.get(connection) === true;
}

/**
 * Sends a write through `send` (an ORM's own path to pg `client`, which may wait before it
 * reaches the client) and has `client` refuse it if a COMMIT or ROLLBACK goes out first.
 * Resolves to `undefined` when it was refused so, else to what `send` gave.
 */
export async function sendWriteWatched<R>(
  client: object,
  text: string,
  send: () => Promise<R>,
): Promise<R | undefined> {
  watchTransactionEnd(client, 'query');
  if (transactionEndSent(client)) return undefined;
  const write: ExpectedWrite = { text, refused: false };
  const writes = expected.get(client) ?? [];
  expected.set(client, writes);
  writes.push(write);
  try {
    return await send();
  } catch (error) {
    if (write.refused) return undefined;
    throw error;
  } finally {
    writes.splice(writes.indexOf(write), 1);
  }
}
