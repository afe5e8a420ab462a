import { refusal } from '../consumer/consumer-transactions.js';

interface PgClientLike {
  query(...args: unknown[]): unknown;
  release?: (...args: unknown[]) => unknown;
}

/** Drizzle's session of a transaction, which holds the pg client its statements go through. */
interface SessionLike {
  client?: PgClientLike;
}

/**
 * Makes the statements of the Drizzle transaction `tx` fail with `closed()`'s error once it
 * returns one, COMMIT and ROLLBACK excepted, by a gate in front of the pg client of its session.
 * Drizzle does not refuse a `tx` whose transaction has ended: a statement sent while the ROLLBACK
 * is on its way back runs after it, on its own, and a later one on a client back in the pool.
 *
 * On a pool, the transaction's session and client are its own: the gate stays, and Drizzle
 * releases the client through it. On a single client, the session is the database's: the
 * returned function, called once the transaction has ended, takes the gate off again unless
 * the client was released through it (and turns it off, should another transaction's gate have
 * been put over it on the same client meanwhile).
 */
export function gateDrizzleSession(
  tx: object,
  closed: () => Error | undefined,
): (() => void) | undefined {
  const session = (tx as { session?: SessionLike }).session;
  const client = session?.client;
  if (!session || !client || typeof client.query !== 'function') return undefined;
  let released = false;
  // Off once taken off: a gate left in place under another transaction's passes everything.
  let active = true;
  const gated = new Proxy(client, {
    get(target, property) {
      if (property === 'query') {
        return (...args: unknown[]) => {
          const [statement] = args;
          const text =
            typeof statement === 'string' ? statement : (statement as { text?: unknown })?.text;
          const error = active ? refusal(closed, text) : undefined;
          if (error) return Promise.reject(error);
          return target.query(...args);
        };
      }
      if (property === 'release' && typeof target.release === 'function') {
        return (...args: unknown[]) => {
          released = true;
          return target.release!(...args);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  session.client = gated;
  return () => {
    if (released) return;
    active = false;
    if (session.client === gated) session.client = client;
  };
}
