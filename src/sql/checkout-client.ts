import type { Pool, PoolClient } from 'pg';
import { OutboxkitError } from '../errors/outboxkit-error.js';

/**
 * Checks a client out of a pool that may be the application's (whose clients may have no
 * listener of their own) with `onError` listening from the hand-over until `release()`. The
 * callback form of `connect` matters: pg-pool calls it inside the hand-over, before the socket's
 * next message is parsed, whereas an awaited promise resumes only after a FATAL that arrived
 * with the ready message has been emitted to nobody.
 */
export function checkoutClient(pool: Pool, onError: (error: Error) => void): Promise<PoolClient> {
  return new Promise((resolve, reject) => {
    pool.connect((error, client, release) => {
      if (error || !client) {
        reject(error ?? new OutboxkitError('pool-no-client', 'the pg pool handed over no client'));
        return;
      }
      client.on('error', onError);
      // pg-pool sets `release` anew at every checkout; ours removes the listener first, and
      // pg-pool adds its own for the idle client in the same turn.
      client.release = (err?: Error | boolean) => {
        client.off('error', onError);
        release(err);
      };
      resolve(client);
    });
  });
}
