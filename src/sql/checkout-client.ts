import type { Pool, PoolClient } from 'pg';
import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * Checks a client out of a pool that may be the application's (whose clients may have no
 * listener of their own) with `onError` listening from the hand-over until `release()`. The
 * callback form of `connect` matters: pg-pool calls it inside the hand-over, before the socket's
 * next message is parsed, whereas an awaited promise resumes only after a FATAL that arrived
 * with the ready message has been emitted to nobody.
 *
 * When `abandon` aborts while the client is out, its socket is destroyed: a statement waiting
 * on a link that hangs then fails at once instead of at the pool's `query_timeout`. Nothing
 * commits that way; Postgres rolls the session back when it sees the link gone, or at its
 * `idle_in_transaction_session_timeout`.
 */
export function checkoutClient(
  pool: Pool,
  onError: (error: Error) => void,
  abandon?: AbortSignal,
): Promise<PoolClient> {
  if (abandon?.aborted) return Promise.reject(abandon.reason);
  return new Promise((resolve, reject) => {
    // A checkout still waiting (a new connection whose server does not answer, and pg has no
    // connect timeout by default) is given up too; its client, should it come, is dropped.
    let givenUp = false;
    const onGiveUp = () => {
      givenUp = true;
      reject(abandon?.reason);
    };
    abandon?.addEventListener('abort', onGiveUp, { once: true });
    pool.connect((error, client, release) => {
      abandon?.removeEventListener('abort', onGiveUp);
      if (givenUp) {
        if (client) release(true);
        return;
      }
      if (error || !client) {
        reject(error ?? new OutboxkitError('pool-no-client', 'the pg pool handed over no client'));
        return;
      }
      client.on('error', onError);
      const onAbandon = () => destroySocket(client, abandon?.reason);
      abandon?.addEventListener('abort', onAbandon, { once: true });
      // pg-pool sets `release` anew at every checkout; ours removes the listeners first, and
      // pg-pool adds its own for the idle client in the same turn.
      client.release = (err?: Error | boolean) => {
        client.off('error', onError);
        abandon?.removeEventListener('abort', onAbandon);
        release(err);
      };
      resolve(client);
    });
  });
}

/** pg has no public way to drop a connection whose peer does not answer: `end()` waits for it. */
export function destroySocket(client: PoolClient, reason: unknown): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(e?: Error): void } } })
    .connection?.stream;
  stream?.destroy(reason instanceof Error ? reason : new Error(String(reason)));
}
