import type { Pool, PoolClient } from 'pg';
import { checkoutClient, destroySocket } from '../sql/checkout-client.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';

/**
 * The LISTEN session is idle by design: an application's `idle_session_timeout` (Postgres 14
 * on) would end it at every interval, each time with a warning and a new session. Its own
 * statement, before the LISTEN, so that the session still shows as `LISTEN ...` in
 * pg_stat_activity; the setting is looked up, so an older server is not refused.
 */
const KEEP_IDLE_SESSION = `SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'`;

/**
 * Holds a LISTEN on the outbox channel and calls `onNotify` for each notification, and once
 * after every (re)connect, since notifications sent while it was away are lost for good.
 */
export class OutboxListener {
  readonly #pool: Pool;
  readonly #listenSql: string;
  readonly #onNotify: () => void;
  readonly #logger: OutboxLogger;
  readonly #backoff: BackoffPolicy;
  readonly #stopping = new AbortController();
  /**
   * Aborted by a stop that finds the loop connecting or sending its LISTEN, which a link that
   * hangs would hold: the socket is then destroyed. A stop that finds it waiting with its LISTEN
   * made ends the connection politely instead (a destroyed one logged a pool error each stop).
   */
  readonly #abandon = new AbortController();
  #waiting = false;
  #loop: Promise<void> | undefined;
  /** LISTEN connections made so far. */
  connects = 0;

  constructor(
    pool: Pool,
    listenSql: string,
    onNotify: () => void,
    logger: OutboxLogger,
    backoff: BackoffPolicy,
  ) {
    this.#pool = pool;
    this.#listenSql = listenSql;
    this.#onNotify = onNotify;
    this.#logger = logger;
    this.#backoff = backoff;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    // One listener for the whole run: one per connection would pile up on the signal.
    const stopped = new Promise<void>((resolve) =>
      this.#stopping.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    let failures = 0;
    while (!this.#stopping.signal.aborted) {
      let onLost!: (error: unknown) => void;
      const lost = new Promise<unknown>((resolve) => {
        onLost = resolve;
      });
      let client: PoolClient;
      try {
        // The pool may be the application's: this client must be heard from the hand-over on.
        // Given up at a stop: a checkout or a LISTEN that hangs on a dead link must not hold it.
        client = await checkoutClient(this.#pool, onLost, this.#abandon.signal);
      } catch (error) {
        if (this.#stopping.signal.aborted) return;
        failures += 1;
        this.#logger.warn('LISTEN connection failed; retrying', { error: errorMessage(error) });
        await abortableDelay(backoffDelay(this.#backoff, failures), this.#stopping.signal);
        continue;
      }
      client.once('end', () => onLost(new Error('connection ended')));
      try {
        await client.query(KEEP_IDLE_SESSION);
        await client.query(this.#listenSql);
        failures = 0;
        this.connects += 1;
        client.on('notification', this.#onNotify);
        this.#onNotify();
        this.#waiting = true;
        const error = await Promise.race([lost, stopped]).finally(() => {
          this.#waiting = false;
        });
        if (this.#stopping.signal.aborted) {
          client.removeListener('notification', this.#onNotify);
          client.release(true);
          // Ended politely; a link that hangs would keep its socket, and the process, open.
          const hung = setTimeout(() => destroySocket(client, this.#stopping.signal.reason), 2000);
          client.once('end', () => clearTimeout(hung));
          hung.unref();
          return;
        }
        throw error;
      } catch (error) {
        client.removeListener('notification', this.#onNotify);
        client.release(true);
        if (this.#stopping.signal.aborted) return;
        failures += 1;
        this.#logger.warn('LISTEN connection lost; reconnecting', { error: errorMessage(error) });
        await abortableDelay(backoffDelay(this.#backoff, failures), this.#stopping.signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    if (!this.#waiting) this.#abandon.abort();
    await this.#loop;
  }
}
