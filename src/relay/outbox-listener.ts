import { clearTimeout, setTimeout } from 'node:timers';
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

/** How long a notification of the relay's own may take to reach its LISTEN before it warns. */
const LISTEN_CHECK_MS = 5_000;

/**
 * Holds a LISTEN on the outbox channel and calls `onNotify` for each notification, and once
 * after every (re)connect, since notifications sent while it was away are lost for good. After
 * each LISTEN it notifies itself through another session of the pool, and warns (once) when
 * that notification does not come: behind a pooler in transaction mode (PgBouncer) the LISTEN
 * lands on a server session that other clients then use, and the relay, hearing nothing, wakes
 * only by polling.
 */
export class OutboxListener {
  readonly #pool: Pool;
  readonly #listenSql: string;
  readonly #channelName: string;
  readonly #pollIntervalMs: number;
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
  readonly #checkMs: number;
  #hears: boolean | undefined;
  #loop: Promise<void> | undefined;
  /** LISTEN connections made so far. */
  connects = 0;

  constructor(
    pool: Pool,
    channel: { readonly listenSql: string; readonly name: string },
    onNotify: () => void,
    logger: OutboxLogger,
    options: {
      readonly backoff: BackoffPolicy;
      readonly pollIntervalMs: number;
      /** How long its own notification may take; 5 s by default. */
      readonly checkMs?: number;
    },
  ) {
    this.#pool = pool;
    this.#listenSql = channel.listenSql;
    this.#channelName = channel.name;
    this.#pollIntervalMs = options.pollIntervalMs;
    this.#checkMs = options.checkMs ?? LISTEN_CHECK_MS;
    this.#onNotify = onNotify;
    this.#logger = logger;
    this.#backoff = options.backoff;
  }

  /**
   * Whether a notification the listener sent itself reached its LISTEN (checked once, after the
   * first LISTEN that held long enough); undefined until then.
   */
  get hearsNotifications(): boolean | undefined {
    return this.#hears;
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
        // Said at the level the trouble was: a log kept at warn saw it fail and never come back.
        if (failures > 0) this.#logger.warn('LISTEN connection made again', {});
        failures = 0;
        this.connects += 1;
        client.on('notification', this.#onNotify);
        this.#onNotify();
        const ended = Promise.race([lost, stopped]);
        if (this.#hears === undefined) void this.#checkHeard(client, ended);
        this.#waiting = true;
        const error = await ended.finally(() => {
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

  /** Notifies the channel from another session and warns when `client` does not hear it. */
  async #checkHeard(client: PoolClient, ended: Promise<unknown>): Promise<void> {
    let heard!: () => void;
    const notified = new Promise<'heard'>((resolve) => {
      heard = () => resolve('heard');
    });
    client.once('notification', heard);
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#pool.query('SELECT pg_notify($1, $2)', [this.#channelName, 'listen-check']);
      const outcome = await Promise.race([
        notified,
        ended.then(() => 'ended' as const),
        new Promise<'unheard'>((resolve) => {
          timer = setTimeout(() => resolve('unheard'), this.#checkMs);
        }),
      ]);
      // A stop ends it too (`ended`); an earlier connection's check may have answered meanwhile.
      if (outcome === 'ended' || this.#hears !== undefined) return;
      this.#hears = outcome === 'heard';
      if (this.#hears) return;
      this.#logger.warn(
        "the relay's LISTEN does not hear notifications: it wakes only by polling, every pollIntervalMs",
        {
          pollIntervalMs: this.#pollIntervalMs,
          waitedMs: this.#checkMs,
          fix: 'a pooler in transaction mode (PgBouncer) passes no notifications: give the relay a direct or session-mode database URL, or listen: false and a short pollIntervalMs',
        },
      );
    } catch {
      // The connection's own loop reports a database that fails; the check only looks.
    } finally {
      clearTimeout(timer);
      client.removeListener('notification', heard);
    }
  }

  async stop(): Promise<void> {
    this.#stopping.abort();
    if (!this.#waiting) this.#abandon.abort();
    await this.#loop;
  }
}
