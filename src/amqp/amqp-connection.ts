import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { brokerMisconfiguration } from '../start/misconfiguration.js';
import { START_CHECK_TIMEOUT_MS } from '../start/start-checks.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { type BackoffPolicy, backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger, redactUrl } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { UrlRotation } from './amqp-urls.js';
import { closeChannel, closeConnection } from './close-within.js';
import { connectAmqp } from './connect-amqp.js';

export interface AmqpConnectionOptions {
  /** Tried in turn: the next one after a failed connect or a lost connection. */
  readonly urls: readonly string[];
  readonly heartbeatSeconds: number;
  readonly reconnectBackoff: BackoffPolicy;
  readonly logger: OutboxLogger;
  /** Shown in the broker's management UI. */
  readonly connectionName: string;
  /** TLS settings for every URL, all `amqps://` (see `amqpTlsFor`). */
  readonly tls?: ConnectionOptions | undefined;
}

/**
 * One AMQP connection that keeps itself up: it reconnects with backoff after any loss, and
 * reports when the broker blocks publishing (memory or disk alarm), since publishes then hang.
 * Emits `connected` and `disconnected`.
 */
export class AmqpConnection extends EventEmitter {
  readonly #options: AmqpConnectionOptions;
  readonly #urls: UrlRotation;
  /** The latest failed connect to each URL since the last connect that worked. */
  readonly #recentFailures = new Map<string, unknown>();
  readonly #closing = new AbortController();
  #model: ChannelModel | undefined;
  #blocked = false;
  #loop: Promise<void> | undefined;
  #startedAt = 0;
  #changed = new EventEmitter();
  #firstAttempt: ((attempt: ConnectAttempt) => void) | undefined;
  readonly #firstAttemptDone: Promise<ConnectAttempt>;
  /**
   * The first round tries every URL before the start hears how it went: a node refused for
   * good (its certificate, say) must not fail a start that the next node would serve, and a
   * node that is down must not hide the next node's refusal.
   */
  #firstRoundLeft: number;
  #firstRoundRefusal: { url: string; error: unknown } | undefined;
  /** A warning of a lost or failed connection was logged since the last connect. */
  #troubleLogged = false;
  /** Connections made so far; more than one means the link was lost and made again. */
  connects = 0;

  constructor(options: AmqpConnectionOptions) {
    super();
    this.#options = options;
    this.#urls = new UrlRotation(options.urls);
    this.#firstRoundLeft = options.urls.length;
    this.#changed.setMaxListeners(0);
    this.#firstAttemptDone = new Promise((resolve) => {
      this.#firstAttempt = resolve;
    });
  }

  /**
   * How the first connect after `start()` went: with the error and URL when it failed. Start
   * checks tell a refused login (which no retry mends) from a broker that is down by it.
   * Resolves without an error too when the connection is closed before any attempt ended.
   */
  firstAttempt(): Promise<ConnectAttempt> {
    return this.#firstAttemptDone;
  }

  #settleFirstAttempt(error?: unknown, url = this.#urls.current): void {
    this.#firstAttempt?.({ url, ...(error !== undefined && { error }) });
    this.#firstAttempt = undefined;
  }

  /**
   * The latest failed connect to each URL since the last connect that worked, oldest first: for
   * an error that must say why it gave up, naming every node it tried.
   */
  get recentFailures(): readonly ConnectAttempt[] {
    return [...this.#recentFailures].map(([url, error]) => ({ url, error }));
  }

  get isReady(): boolean {
    return this.#model !== undefined && !this.#blocked;
  }

  get isConnected(): boolean {
    return this.#model !== undefined;
  }

  /** Starts connecting in the background; `ready()` tells when it is up. */
  start(): void {
    this.#startedAt ||= monotonicMs();
    this.#loop ??= this.#run();
  }

  /**
   * Resolves with the connection once it is up and not blocked, or undefined once `signal`
   * aborts. With `evenIfBlocked`, a blocked connection will do: consuming works during a
   * broker alarm and helps end it, only publishing hangs.
   */
  async ready(
    signal?: AbortSignal,
    options: { evenIfBlocked?: boolean } = {},
  ): Promise<ChannelModel | undefined> {
    for (;;) {
      if (signal?.aborted || this.#closing.signal.aborted) return undefined;
      if (this.isReady || (options.evenIfBlocked && this.#model)) return this.#model;
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#changed.off('change', done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.#changed.on('change', done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }

  async confirmChannel(signal?: AbortSignal): Promise<ConfirmChannel | undefined> {
    const model = await this.ready(signal);
    return model ? openUnlessAborted(model.createConfirmChannel(), signal) : undefined;
  }

  async channel(signal?: AbortSignal): Promise<Channel | undefined> {
    const model = await this.ready(signal);
    return model ? openUnlessAborted(model.createChannel(), signal) : undefined;
  }

  async close(): Promise<void> {
    this.#settleFirstAttempt();
    this.#closing.abort();
    this.#changed.emit('change');
    const model = this.#model;
    this.#model = undefined;
    if (model) await closeConnection(model);
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { logger, reconnectBackoff } = this.#options;
    let failures = 0;
    while (!this.#closing.signal.aborted) {
      let model: ChannelModel | undefined;
      try {
        model = await this.#connectUnlessClosed();
      } catch (error) {
        // A first round refused for good (login, vhost, TLS) fails its owner's start, which
        // says why: a "retrying" line before that error would say the opposite.
        const url = this.#urls.current;
        const misconfigured = brokerMisconfiguration(error, url);
        let failsStart = false;
        const inFirstRound = this.#firstAttempt !== undefined;
        if (inFirstRound) {
          if (misconfigured) this.#firstRoundRefusal ??= { url, error };
          this.#firstRoundLeft -= 1;
          if (this.#firstRoundLeft <= 0) {
            // Only while the start checks still wait for it: past their bound, nobody reports it.
            const refusal = this.#firstRoundRefusal;
            failsStart =
              refusal !== undefined && monotonicMs() - this.#startedAt < START_CHECK_TIMEOUT_MS;
            this.#settleFirstAttempt(refusal?.error ?? error, refusal?.url ?? url);
          }
        }
        this.#recentFailures.delete(url);
        this.#recentFailures.set(url, error);
        // Within the first round, the next node is tried soon: the start checks wait for it.
        if (!inFirstRound) failures += 1;
        const delay = backoffDelay(reconnectBackoff, Math.max(failures, 1));
        if (!failsStart) {
          // A login or vhost refused while running (a vhost deleted, a password rotated) says
          // what to fix, in the words the start uses, rather than amqplib's protocol text.
          this.#troubleLogged = true;
          logger.warn('RabbitMQ connection failed; retrying', {
            // Which of the process's connections: the others may be up (a probe's `-copies`).
            connection: this.#options.connectionName,
            url: redactUrl(url),
            error: errorMessage(misconfigured ?? error),
            retryInMs: delay,
          });
        }
        this.#urls.advance();
        await abortableDelay(delay, this.#closing.signal);
        continue;
      }
      this.#settleFirstAttempt();
      if (model === undefined) return;
      if (this.#closing.signal.aborted) {
        await closeConnection(model);
        return;
      }
      failures = 0;
      this.#recentFailures.clear();
      this.connects += 1;
      // At the level its trouble was told at: a log kept at `warn` (the default in code) showed
      // "connection lost" and never that the link was made again.
      const recovered = this.#troubleLogged;
      this.#troubleLogged = false;
      const closed = new Promise<void>((resolve) => model.once('close', () => resolve()));
      this.#model = model;
      this.#blocked = false;
      const connected = {
        connection: this.#options.connectionName,
        url: redactUrl(this.#urls.current),
      };
      if (recovered) logger.warn('RabbitMQ connected', connected);
      else logger.info('RabbitMQ connected', connected);
      this.emit('connected');
      this.#changed.emit('change');
      await closed;
      this.#model = undefined;
      if (this.#closing.signal.aborted) return;
      this.#troubleLogged = true;
      logger.warn('RabbitMQ connection lost; reconnecting', { url: redactUrl(this.#urls.current) });
      // A node that dropped us may be going down: try the next one first.
      this.#urls.advance();
      this.emit('disconnected');
      this.#changed.emit('change');
      await abortableDelay(backoffDelay(reconnectBackoff, 1), this.#closing.signal);
    }
  }

  /**
   * Connects, or resolves undefined as soon as `close()` is called. A broker that accepts the
   * TCP connection and then answers nothing (hung, or a half-open link) holds a connect for its
   * whole timeout: `close()`, and with it a relay's or consumer host's `stop()`, must not wait
   * for that. A connection made after all is closed at once.
   */
  #connectUnlessClosed(): Promise<ChannelModel | undefined> {
    const signal = this.#closing.signal;
    const connecting = this.#connect(signal);
    return new Promise((resolve, reject) => {
      const onClose = () => {
        resolve(undefined);
        connecting.then(closeConnection, () => {});
      };
      signal.addEventListener('abort', onClose, { once: true });
      connecting.then(
        (model) => {
          signal.removeEventListener('abort', onClose);
          resolve(model);
        },
        (error: unknown) => {
          signal.removeEventListener('abort', onClose);
          reject(error);
        },
      );
    });
  }

  async #connect(signal: AbortSignal): Promise<ChannelModel> {
    const { connectionName, heartbeatSeconds, logger, tls } = this.#options;
    const model = await connectAmqp(this.#urls.current, {
      connectionName,
      heartbeatSeconds,
      logger,
      tls,
      signal,
    });
    model.on('blocked', (reason: string) => {
      this.#blocked = true;
      this.#options.logger.warn('RabbitMQ blocked publishing', { reason });
      this.#changed.emit('change');
    });
    model.on('unblocked', () => {
      this.#blocked = false;
      this.#options.logger.info('RabbitMQ unblocked publishing');
      this.#changed.emit('change');
    });
    return model;
  }
}

/** The outcome of one connect: `error` is set when it failed. */
export interface ConnectAttempt {
  readonly url: string;
  readonly error?: unknown;
}

/**
 * The channel being opened, or undefined once `signal` aborts first: a broker that hangs never
 * answers the open, and a stop would wait for it until the heartbeat gave up on the link. A
 * channel that opens after that is closed.
 */
async function openUnlessAborted<C extends Channel>(
  opening: Promise<C>,
  signal: AbortSignal | undefined,
): Promise<C | undefined> {
  const channel = opening.then(attachErrorListener);
  if (!signal) return channel;
  if (signal.aborted) {
    void closeChannel(channel.catch(() => undefined));
    return undefined;
  }
  let onAbort = () => {};
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    const first = await Promise.race([channel, aborted]);
    if (first === undefined) void closeChannel(channel.catch(() => undefined));
    return first;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

/** A channel without an 'error' listener would crash the process when the broker closes it. */
function attachErrorListener<C extends Channel>(channel: C): C {
  channel.on('error', () => {});
  return channel;
}
