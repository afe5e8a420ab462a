import { OutboxkitError } from '../errors/outboxkit-error.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import type { TlsOptions } from '../options/tls-options.js';
import { brokerMisconfiguration } from '../start/misconfiguration.js';
import { durationMs } from '../util/duration-option.js';
import { consoleLogger, errorMessage, type OutboxLogger, redactUrl } from '../util/logger.js';
import { resolveLogger } from '../util/resolve-logger.js';
import { AmqpConnection } from './amqp-connection.js';
import { amqpTlsFor } from './amqp-tls.js';
import { type AmqpUrls, amqpUrlList } from './amqp-urls.js';
import { closeChannel } from './close-within.js';
import {
  assertExchanges,
  type ExchangeDeclaration,
  exchangeDeclarations,
} from './exchange-declaration.js';

export interface DeclareExchangesOptions {
  /** How long to keep trying while RabbitMQ cannot be reached. Default 30 s. */
  readonly timeoutMs?: number | undefined;
  /** Reports the retries. Default: warnings on stderr. */
  readonly logger?: OutboxLogger | undefined;
  /** TLS of the connection to `amqps://` URLs, as the relay's `amqpTls`. Default Node's. */
  readonly amqpTls?: TlsOptions | undefined;
}

/** Every option of `DeclareExchangesOptions`. */
export const DECLARE_EXCHANGES_OPTION_NAMES = optionNames<DeclareExchangesOptions>()([
  'timeoutMs',
  'logger',
  'amqpTls',
]);

/**
 * Declares the exchanges an application publishes to, with their type and alternate exchange,
 * then closes its connection. Safe to run at every deploy: declaring what exists with the same
 * settings changes nothing. Rejects with a `TopologyConflictError` for an exchange that exists
 * with other settings, a `StartupError` when RabbitMQ refuses the login, the virtual host or
 * the declare (`broker-access-refused`: the user has no configure permission), and an
 * `OutboxkitError` (`broker-unreachable`) when RabbitMQ cannot be reached within `timeoutMs`.
 *
 * @example
 * await declareExchanges(process.env.AMQP_URL!, [
 *   { name: 'orders', type: 'topic', alternateExchange: 'orders.unrouted' },
 *   { name: 'orders.unrouted', type: 'fanout' },
 * ]);
 */
export async function declareExchanges(
  amqpUrl: AmqpUrls,
  exchanges: readonly ExchangeDeclaration[],
  declareOptions?: DeclareExchangesOptions,
): Promise<void> {
  const urls = amqpUrlList(amqpUrl);
  const declarations = exchangeDeclarations(exchanges);
  const options = optionsObject(
    'options',
    declareOptions,
    DECLARE_EXCHANGES_OPTION_NAMES,
    'declareExchanges',
  );
  // A string would reach AbortSignal.timeout() and fail there, as a raw TypeError.
  const timeoutMs = durationMs('timeoutMs', options.timeoutMs, 30_000);
  const connection = new AmqpConnection({
    urls,
    heartbeatSeconds: 10,
    reconnectBackoff: { initialMs: 100, maxMs: 2_000 },
    logger: resolveLogger(options.logger, consoleLogger),
    connectionName: `outboxkit-declare-${process.pid}`,
    tls: amqpTlsFor(urls, options.amqpTls),
  });
  const deadline = AbortSignal.timeout(timeoutMs);
  connection.start();
  try {
    const attempt = await connection.firstAttempt();
    const misconfigured = attempt.error && brokerMisconfiguration(attempt.error, attempt.url);
    if (misconfigured) throw misconfigured;
    const open = async () => {
      const opened = await connection.channel(deadline);
      if (!opened) {
        const last = connection.recentFailures.at(-1);
        throw new OutboxkitError(
          'broker-unreachable',
          `RabbitMQ at ${urls.map(redactUrl).join(', ')} could not be reached within ${timeoutMs} ms (option timeoutMs) to declare exchanges${last ? `: ${errorMessage(last.error)}` : ''}`,
          { cause: last?.error },
        );
      }
      return opened;
    };
    let channel = await open();
    try {
      channel = await assertExchanges(channel, declarations, open);
    } finally {
      await closeChannel(channel);
    }
  } finally {
    await connection.close();
  }
}
