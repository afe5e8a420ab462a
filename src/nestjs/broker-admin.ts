import type { ConnectionOptions } from 'node:tls';
import type { Channel, ChannelModel } from 'amqplib';
import { UrlRotation } from '../amqp/amqp-urls.js';
import { closeChannel, closeConnection } from '../amqp/close-within.js';
import { connectAmqp } from '../amqp/connect-amqp.js';
import type { ExchangeDeclaration } from '../amqp/exchange-declaration.js';
import { assertExchanges } from '../amqp/exchange-declaration.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StateError } from '../errors/state-error.js';
import { brokerMisconfiguration } from '../start/misconfiguration.js';
import { abortableDelay } from '../util/abortable-delay.js';
import { backoffDelay } from '../util/backoff.js';
import { errorMessage, type OutboxLogger, redactUrl } from '../util/logger.js';
import { monotonicMs } from '../util/monotonic-clock.js';

export interface BrokerAdminOptions {
  /** Tried in turn, like the relay's and the consumers' connections. */
  readonly urls: readonly string[];
  readonly logger: OutboxLogger;
  readonly connectionName: string;
  /** For `amqps://` URLs: the checked `amqpTls`. */
  readonly tls?: ConnectionOptions | undefined;
}

/**
 * The module's own small AMQP connection for what neither the relay nor the consumers do:
 * declaring the exchanges the application publishes to, and reading dead-letter queue depths
 * for the health indicator. Opened when first needed, closed with the module.
 */
export class BrokerAdmin {
  readonly #options: BrokerAdminOptions;
  readonly #urls: UrlRotation;
  #model: Promise<ChannelModel> | undefined;
  #closed = false;
  /** Aborts a connect under way when the module shuts down, so its socket does not linger. */
  readonly #closing = new AbortController();

  constructor(options: BrokerAdminOptions) {
    this.#options = options;
    this.#urls = new UrlRotation(options.urls);
  }

  /**
   * Declares the exchanges (durable), retrying while RabbitMQ cannot be reached, up to
   * `timeoutMs`. Rejects with a `TopologyConflictError` for an exchange that exists with
   * another type.
   */
  async declareExchanges(
    exchanges: ReadonlyMap<string, ExchangeDeclaration>,
    timeoutMs: number,
  ): Promise<void> {
    if (exchanges.size === 0) return;
    const deadline = monotonicMs() + timeoutMs;
    for (let failures = 1; ; failures += 1) {
      let channel: Channel;
      try {
        channel = await (await this.#connection()).createChannel();
      } catch (error) {
        // A refused login or vhost is not mended by waiting: fail now, naming the fix.
        const misconfigured = brokerMisconfiguration(error, this.#urls.current);
        if (misconfigured) throw misconfigured;
        // Shut down while declaring (a SIGTERM during bootstrap): say so, not "unreachable".
        if (this.#closed) {
          throw new StateError(
            'the outbox module was shut down while it declared its exchanges',
            'stopped',
          );
        }
        if (monotonicMs() >= deadline) {
          throw new OutboxkitError(
            'broker-unreachable',
            `RabbitMQ at ${redactUrl(this.#urls.current)} could not be reached within ${timeoutMs} ms (the module's option consumers.startTimeoutMs) to declare exchanges: ${errorMessage(error)}`,
            { cause: error },
          );
        }
        const delay = backoffDelay({ initialMs: 100, maxMs: 2000 }, failures);
        this.#options.logger.warn('RabbitMQ not reachable to declare exchanges; retrying', {
          url: redactUrl(this.#urls.current),
          error: errorMessage(error),
          retryInMs: delay,
        });
        await abortableDelay(delay, this.#closing.signal);
        continue;
      }
      channel.on('error', () => {});
      try {
        channel = await assertExchanges(channel, exchanges.values(), async () => {
          const opened = await (await this.#connection()).createChannel();
          opened.on('error', () => {});
          return opened;
        });
        return;
      } finally {
        await closeChannel(channel);
      }
    }
  }

  /**
   * Messages waiting in each queue; a queue that does not exist counts as undefined. Rejects
   * when RabbitMQ cannot be reached.
   */
  async queueDepths(queues: readonly string[]): Promise<Map<string, number | undefined>> {
    const depths = new Map<string, number | undefined>();
    if (queues.length === 0) return depths;
    const model = await this.#connection();
    let channel: Channel | undefined;
    try {
      for (const queue of queues) {
        // A 404 closes the channel it happened on, so each miss costs a new one.
        if (!channel) {
          channel = await model.createChannel();
          // Once per channel: one per queue would pile up listeners on a long list.
          channel.on('error', () => {});
        }
        try {
          depths.set(queue, (await channel.checkQueue(queue)).messageCount);
        } catch (error) {
          if ((error as { code?: unknown }).code !== 404) throw error;
          depths.set(queue, undefined);
          channel = undefined;
        }
      }
    } finally {
      await closeChannel(channel);
    }
    return depths;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#closing.abort();
    const model = this.#model;
    this.#model = undefined;
    await closeConnection(model);
  }

  #connection(): Promise<ChannelModel> {
    if (this.#closed)
      return Promise.reject(new StateError('the outbox module is shut down', 'stopped'));
    if (!this.#model) {
      const { connectionName, logger, tls } = this.#options;
      const connecting = connectAmqp(this.#urls.current, {
        connectionName,
        logger,
        tls,
        signal: this.#closing.signal,
      }).then((model) => {
        model.once('close', () => {
          if (this.#model === connecting) this.#model = undefined;
        });
        return model;
      });
      connecting.catch(() => {
        this.#urls.advance();
        if (this.#model === connecting) this.#model = undefined;
      });
      this.#model = connecting;
    }
    return this.#model;
  }
}
