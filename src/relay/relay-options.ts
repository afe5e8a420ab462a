import type { Pool } from 'pg';
import { type AmqpUrls, amqpUrlList } from '../amqp/amqp-urls.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { consoleLogger, type OutboxLogger } from '../util/logger.js';

export interface RelayOptions {
  /** Postgres: a pool of your own, or a connection string from which the relay makes its own. */
  readonly pool?: Pool;
  readonly databaseUrl?: string;
  /**
   * RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`, or the URLs of several
   * cluster nodes, tried in turn.
   */
  readonly amqpUrl: AmqpUrls;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string;
  /** Rows claimed per batch. Default 500. */
  readonly batchSize?: number;
  /** Batches in flight at once, each on its own connection and channel. Default 4. */
  readonly concurrency?: number;
  /** Fallback poll when no notification arrives. Default 1000 ms. */
  readonly pollIntervalMs?: number;
  /** Wake on LISTEN/NOTIFY when outbox rows commit. Default true. */
  readonly listen?: boolean;
  /** How long to wait for a batch's confirms; at least twice the heartbeat. Default 30 s. */
  readonly publishTimeoutMs?: number;
  /** AMQP heartbeat in seconds. Default 10. */
  readonly heartbeatSeconds?: number;
  /** Attempts before a row is parked. Default 10. */
  readonly maxAttempts?: number;
  /** Delay between attempts of one row. Default 1 s doubling to 5 min. */
  readonly retryBackoff?: BackoffPolicy;
  /** Delay between reconnects to Postgres or RabbitMQ. Default 100 ms doubling to 10 s. */
  readonly reconnectBackoff?: BackoffPolicy;
  /** Messages larger than this are parked rather than published. Default 128 MiB (RabbitMQ's). */
  readonly maxMessageBytes?: number;
  /** How long `stop()` waits for in-flight confirms before releasing the rows. Default 10 s. */
  readonly stopTimeoutMs?: number;
  readonly logger?: OutboxLogger;
}

export type ResolvedRelayOptions = Required<Omit<RelayOptions, 'pool' | 'databaseUrl'>> &
  Pick<RelayOptions, 'pool' | 'databaseUrl'>;

function positiveInteger(
  options: RelayOptions,
  name: keyof RelayOptions,
  fallback: number,
): number {
  const value = options[name] ?? fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigurationError(name, `must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** Fills in defaults and rejects values the relay cannot work with, naming the option. */
export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  if (!options.pool && !options.databaseUrl) {
    throw new ConfigurationError('databaseUrl', 'give either `pool` or `databaseUrl`');
  }
  const amqpUrl = amqpUrlList(options.amqpUrl);
  const heartbeatSeconds = positiveInteger(options, 'heartbeatSeconds', 10);
  const publishTimeoutMs = positiveInteger(options, 'publishTimeoutMs', 30_000);
  // A dead TCP link leaves confirms pending until the heartbeat notices: a shorter timeout would
  // retry messages the broker may still confirm, for no gain.
  if (publishTimeoutMs < 2 * heartbeatSeconds * 1000) {
    throw new ConfigurationError(
      'publishTimeoutMs',
      `must be at least twice the heartbeat (${2 * heartbeatSeconds * 1000} ms)`,
    );
  }
  return Object.freeze({
    ...options,
    amqpUrl,
    schema: options.schema ?? 'outboxkit',
    batchSize: positiveInteger(options, 'batchSize', 500),
    concurrency: positiveInteger(options, 'concurrency', 4),
    pollIntervalMs: positiveInteger(options, 'pollIntervalMs', 1000),
    listen: options.listen ?? true,
    publishTimeoutMs,
    heartbeatSeconds,
    maxAttempts: positiveInteger(options, 'maxAttempts', 10),
    retryBackoff: options.retryBackoff ?? { initialMs: 1000, maxMs: 300_000 },
    reconnectBackoff: options.reconnectBackoff ?? { initialMs: 100, maxMs: 10_000 },
    maxMessageBytes: positiveInteger(options, 'maxMessageBytes', 128 * 1024 * 1024),
    stopTimeoutMs: positiveInteger(options, 'stopTimeoutMs', 10_000),
    logger: options.logger ?? consoleLogger(),
  });
}
