import type { Channel } from 'amqplib';
import type { AmqpConnection } from '../amqp/amqp-connection.js';
import { closeChannel } from '../amqp/close-within.js';
import { assertExchanges, type ExchangeDeclaration } from '../amqp/exchange-declaration.js';
import { exchangeExists } from '../amqp/exchange-exists.js';
import { TopologyConflictError } from '../consumer/topology-conflict-error.js';
import { StartupError } from '../errors/startup-error.js';
import { errorMessage, type OutboxLogger, silentLogger } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import { exchangeNameProblem } from './exchange-name-problem.js';
import type { PublishOutcome } from './publish-outcome.js';

/** What the relay does with the rows of an exchange it cannot publish to now. */
export type UnusableExchange = Extract<PublishOutcome, { kind: 'permanent' | 'deferred' }>;

/** Why an exchange's rows are put off: it does not exist, or the broker refused to check it. */
type PutOffWhy = 'missing' | 'refused';

/**
 * Whether a failed check was the broker's answer about this exchange (it closed the check's
 * channel with a reply code, such as 403) or amqplib's refusal to send it, rather than a link
 * that went down (no reply at all), which fails the batch as before.
 */
function refusedCheck(error: unknown): boolean {
  const { code } = error as { code?: unknown };
  return (
    (typeof code === 'number' && code >= 300) ||
    error instanceof TypeError ||
    error instanceof RangeError
  );
}

/** How long an exchange seen to exist is trusted before it is checked again. */
const TRUST_MS = 60_000;
/**
 * Rows of a missing exchange are put off for as long as it has been missing, at least the first
 * and at most the second: a short gap costs little, and once it is declared its rows go within
 * the bound. Measured in time rather than checks, since every lane checks.
 */
const MISSING_MIN_DELAY_MS = 500;
const MISSING_MAX_DELAY_MS = 10_000;
/** How long the declarations made on a connect may take before the lanes' checks go first. */
const DECLARE_NOW_MS = 10_000;

/**
 * Knows which exchanges exist. Publishing to a missing exchange closes the channel and fails
 * every unconfirmed message on it, so the relay checks an exchange (on a channel of its own,
 * which a 404 may close) before its first publish, and puts off the rows of a missing one: an
 * exchange declared after the relay started (a deploy order, a topology still being applied) is
 * not the messages' fault.
 *
 * Lanes share one registry; checks run one at a time, since a 404 closes the channel that a
 * concurrent check would be using.
 */
export class ExchangeRegistry {
  readonly #connection: AmqpConnection;
  readonly #seen = new Map<string, number>();
  /** Since when, and why, each exchange's rows are put off, since it was last seen. */
  readonly #putOffSince = new Map<string, { readonly since: number; readonly why: PutOffWhy }>();
  readonly #declarations: readonly ExchangeDeclaration[];
  readonly #logger: OutboxLogger;
  /** The declarations are made again on each new connection, before the next check. */
  #declarePending = true;
  #channel: Channel | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #closing = new AbortController();
  /** Declarations the broker refused for other settings, reported once each. */
  readonly #conflicting = new Set<string>();

  /**
   * @param options.declarations exchanges to declare on each connection, before any check.
   * @param options.logger told once per exchange when it goes missing, with the fix.
   */
  constructor(
    connection: AmqpConnection,
    options: { declarations?: readonly ExchangeDeclaration[]; logger?: OutboxLogger } = {},
  ) {
    this.#connection = connection;
    this.#declarations = options.declarations ?? [];
    this.#logger = options.logger ?? silentLogger;
    connection.on('connected', () => {
      this.#declarePending = true;
      // At once, not at the first row's check: a consumer started meanwhile would declare the
      // exchange without its alternate exchange, which RabbitMQ cannot add afterwards.
      if (this.#declarations.length > 0) this.#declareNow();
    });
  }

  #declareNow(): void {
    // Bounded: the lanes' checks queue behind it, and they must be free to see a stop.
    const signal = AbortSignal.any([this.#closing.signal, AbortSignal.timeout(DECLARE_NOW_MS)]);
    const run = this.#queue.then(() => (this.#declarePending ? this.#declare(signal) : undefined));
    // What fails here is tried again before the next check, which reports it.
    this.#queue = run.catch((error: unknown) =>
      this.#logger.debug(
        'could not declare the exchanges on connect; trying before the next publish',
        {
          error: errorMessage(error),
        },
      ),
    );
  }

  /**
   * Returns the exchanges among `names` that rows cannot go to now, each with what to do with
   * its rows: park them (a name no exchange can have), or put them off (a missing exchange, or
   * one the broker refused to check). Throws when the broker cannot answer at all.
   */
  unusable(names: Iterable<string>, signal?: AbortSignal): Promise<Map<string, UnusableExchange>> {
    const unique = [...new Set(names)];
    const run = this.#queue.then(() => this.#check(unique, signal));
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Forgets what it knew, after a channel error that a vanished exchange may have caused. */
  forget(): void {
    this.#seen.clear();
  }

  async #check(
    names: readonly string[],
    signal?: AbortSignal,
  ): Promise<Map<string, UnusableExchange>> {
    const unusable = new Map<string, UnusableExchange>();
    if (this.#declarePending && this.#declarations.length > 0) {
      await this.#declare(signal);
    }
    for (const name of names) {
      const seenAt = this.#seen.get(name);
      if (seenAt !== undefined && monotonicMs() - seenAt < TRUST_MS) continue;
      // Never asked of the broker: amqplib cannot send a name over 255 bytes (and wedged the
      // check's channel), and the broker refuses to check the default exchange (403), which
      // failed the whole batch, again and again.
      const invalid = exchangeNameProblem(name);
      if (invalid !== undefined) {
        unusable.set(name, { kind: 'permanent', reason: invalid });
        continue;
      }
      let exists: boolean;
      try {
        exists = await this.#exists(name, signal);
      } catch (error) {
        if (signal?.aborted || !refusedCheck(error)) throw error;
        // The broker refused this one question, for this exchange: its rows are put off with the
        // broker's words, and the other exchanges' rows go. Not parked: nothing says the
        // messages are at fault, and a broker's refusal can be lifted.
        const delayMs = this.#putOff(name, 'refused', () =>
          this.#logger.warn(
            `exchange "${name}" could not be checked: its outbox rows are put off (not parked) until it can be`,
            { exchange: name, error: errorMessage(error) },
          ),
        );
        unusable.set(name, {
          kind: 'deferred',
          reason: `exchange check refused: ${errorMessage(error)}`,
          delayMs,
        });
        continue;
      }
      if (exists) {
        this.#seen.set(name, monotonicMs());
        const putOff = this.#putOffSince.get(name);
        if (putOff !== undefined) {
          this.#putOffSince.delete(name);
          // The rows put off later than this one come due on their own, each at most
          // MISSING_MAX_DELAY_MS after it was put off: they cannot be told from delayed rows.
          this.#logger.info(
            `exchange ${putOff.why === 'missing' ? 'declared' : 'checked'}; its put-off rows go as they come due, within ${MISSING_MAX_DELAY_MS / 1000} s`,
            { exchange: name },
          );
        }
      } else {
        // Once per exchange until it appears: its rows come back every few seconds.
        const delayMs = this.#putOff(name, 'missing', () =>
          this.#logger.warn(
            `exchange "${name}" does not exist: its outbox rows are put off (not parked) until ` +
              'it is declared. Declare it with declareExchanges(amqpUrl, [{ name, type }]) or ' +
              "the relay's `exchanges` option (OutboxModule's `exchanges` in Nest), or start the " +
              'consumer that declares it',
            { exchange: name },
          ),
        );
        unusable.set(name, {
          kind: 'deferred',
          reason: `exchange not found: ${name}`,
          delayMs,
        });
      }
    }
    return unusable;
  }

  /**
   * How long to put off the rows of `name`, which cannot be used for `why`: as long as it has
   * been so, within the bounds. `warn` runs when it starts being so (once per exchange and why).
   */
  #putOff(name: string, why: PutOffWhy, warn: () => void): number {
    const now = monotonicMs();
    const putOff = this.#putOffSince.get(name);
    if (putOff?.why !== why) warn();
    const since = putOff?.since ?? now;
    this.#putOffSince.set(name, { since, why });
    return Math.min(MISSING_MAX_DELAY_MS, Math.max(MISSING_MIN_DELAY_MS, now - since));
  }

  async #declare(signal?: AbortSignal): Promise<void> {
    const reopen = () => {
      // The 406 that asks for a new channel closed this one.
      this.#channel = undefined;
      return this.#open(signal);
    };
    // One at a time: an exchange that exists with other settings must not hold up the rest.
    for (const declaration of this.#declarations) {
      try {
        await assertExchanges(await this.#open(signal), [declaration], reopen);
      } catch (error) {
        // A 406 or 403 closes the channel.
        this.#channel = undefined;
        const refused =
          error instanceof TopologyConflictError ||
          (error instanceof StartupError && error.code === 'broker-access-refused');
        if (!refused) throw error;
        // Its rows go to the exchange as it is (put off while it does not exist); say so once.
        if (!this.#conflicting.has(declaration.name)) {
          this.#conflicting.add(declaration.name);
          this.#logger.error(errorMessage(error), { exchange: declaration.name });
        }
      }
    }
    this.#declarePending = false;
  }

  async #open(signal?: AbortSignal): Promise<Channel> {
    if (!this.#channel) {
      const channel = await this.#connection.channel(signal);
      if (!channel) {
        // Stopping: the signal's reason tells the caller its batch was given up, not failed.
        signal?.throwIfAborted();
        throw new Error('not connected to RabbitMQ');
      }
      channel.once('close', () => {
        if (this.#channel === channel) this.#channel = undefined;
      });
      this.#channel = channel;
    }
    return this.#channel;
  }

  async #exists(name: string, signal?: AbortSignal): Promise<boolean> {
    const channel = await this.#open(signal);
    try {
      const exists = await exchangeExists(channel, name);
      // A 404 closed the channel.
      if (!exists) this.#channel = undefined;
      return exists;
    } catch (error) {
      if (this.#channel === channel) this.#channel = undefined;
      // One the broker closed is closed already; one amqplib could not send on is wedged (it
      // waits for the answer to what it never sent) and would be left open.
      void closeChannel(channel);
      throw error;
    }
  }

  async close(): Promise<void> {
    this.#closing.abort();
    const channel = this.#channel;
    this.#channel = undefined;
    await closeChannel(channel);
  }
}
