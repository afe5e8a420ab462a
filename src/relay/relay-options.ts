import type { Pool } from 'pg';
import { type AmqpUrls, amqpUrlList, heartbeatFor } from '../amqp/amqp-urls.js';
import { type ExchangeDeclaration, exchangeDeclarations } from '../amqp/exchange-declaration.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { backoffOption } from '../options/backoff-option.js';
import { booleanOption } from '../options/boolean-option.js';
import { connectionNameOption } from '../options/connection-name-option.js';
import { pgPool, postgresUrl } from '../options/database-handle.js';
import { maxAttemptsOption } from '../options/max-attempts-option.js';
import { MAX_MESSAGE_BYTES_LIMIT } from '../options/max-message-bytes.js';
import { nestedOptions } from '../options/nested-options.js';
import { optionNames } from '../options/option-names.js';
import { RENAMED_OPTIONS } from '../options/renamed-options.js';
import type { TlsOptions } from '../options/tls-options.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import type { BackoffPolicy } from '../util/backoff.js';
import type { DefaultsFilled } from '../util/defaults-filled.js';
import { durationMs } from '../util/duration-option.js';
import { consoleLogger, type OutboxLogger } from '../util/logger.js';
import { positiveInteger } from '../util/positive-integer.js';
import { resolveLogger } from '../util/resolve-logger.js';
import { MAX_PUBLISH_TIMEOUT_MS } from './stall-timeout.js';

/** How a row the broker rejects is retried before it is parked. */
export interface RelayRetryPolicy {
  /**
   * Times the broker may reject a row published alone (it closed the channel with a content or
   * precondition error while the row was the only message in flight) before the row is parked.
   * Infrastructure failures (nacks, timeouts, closed channels, lost connections) never count:
   * they are retried for as long as they last. Default 10.
   */
  readonly maxAttempts?: number | undefined;
  /** Delay before a row is tried again, whatever failed. Default 1 s doubling to 5 min. */
  readonly backoff?: Partial<BackoffPolicy> | undefined;
  /**
   * Retry a row the broker returns as unroutable (no queue is bound for it, or the only queue
   * for it is down: a classic queue whose cluster node is down is returned so too), counting
   * towards `maxAttempts`, instead of parking it at once. A keyed row's successors wait behind
   * it, so its key keeps its order, and rows published while a consumer's queue is missing
   * (it is declared later, or its node restarts) go once it is back. The cost: a row that is
   * truly unroutable is parked only after `maxAttempts` tries (about 8 minutes at the default
   * backoff), holding its key meanwhile. Default false.
   */
  readonly unroutable?: boolean | undefined;
}

/** Every option of `RelayRetryPolicy`, for the options table in docs/options.md. */
export const RELAY_RETRY_OPTION_NAMES = optionNames<RelayRetryPolicy>()([
  'maxAttempts',
  'backoff',
  'unroutable',
]);

export interface RelayOptions {
  /** Postgres: a pool of your own, or a connection string from which the relay makes its own. */
  readonly pool?: Pool | undefined;
  readonly databaseUrl?: string | undefined;
  /** TLS settings of the pool made from `databaseUrl` (not of a `pool` of yours). */
  readonly databaseTls?: TlsOptions | undefined;
  /**
   * RabbitMQ URL, for example `amqp://guest:guest@localhost:5672`, or the URLs of several
   * cluster nodes, tried in turn.
   */
  readonly amqpUrl: AmqpUrls;
  /** TLS settings (CA, client certificate and key) for `amqps://` URLs. Default Node's. */
  readonly amqpTls?: TlsOptions | undefined;
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /** Rows claimed per batch at most. Default 1000. */
  readonly batchSize?: number | undefined;
  /**
   * Payload bytes a claim aims at: each lane sizes its next claim so that it holds about this
   * much if its messages are no larger than the largest of its last claim (at least one row; a
   * lane's first claim takes at most 64). Large messages make small batches, so a lane's memory
   * stays bounded. Default 4 MiB.
   */
  readonly maxBatchBytes?: number | undefined;
  /**
   * Lanes, each with its own channel and up to two batches in flight: it claims and publishes the
   * next while the one before waits for its confirms. Each batch is a transaction on a connection
   * of its own; a `pool` of yours needs `2 * concurrency + 3` connections. Default 4.
   */
  readonly concurrency?: number | undefined;
  /**
   * Rows of one ordering key a batch may carry: its oldest waiting row and the ones after it,
   * published one after another, each once the one before it is confirmed (so one message per
   * key is in flight, as ever). 1 claims one row per key per batch. Default 100.
   */
  readonly keyRunSize?: number | undefined;
  /** Fallback poll when no notification arrives. Default 1000 ms. */
  readonly pollIntervalMs?: number | undefined;
  /** Wake on LISTEN/NOTIFY when outbox rows commit. Default true. */
  readonly listen?: boolean | undefined;
  /** How long to wait for a batch's confirms; at least twice the heartbeat. Default 30 s. */
  readonly publishTimeoutMs?: number | undefined;
  /** AMQP heartbeat in seconds. Default 10. */
  readonly heartbeatSeconds?: number | undefined;
  /** Attempts and delays of a row the broker rejects. Default 10 attempts, 1 s doubling to 5 min. */
  readonly retry?: RelayRetryPolicy | undefined;
  /** Delay between reconnects to Postgres or RabbitMQ. Default 100 ms doubling to 10 s. */
  readonly reconnectBackoff?: Partial<BackoffPolicy> | undefined;
  /** Messages larger than this are parked rather than published. Default 128 MiB (RabbitMQ's). */
  readonly maxMessageBytes?: number | undefined;
  /** How long `stop()` waits for in-flight confirms before releasing the rows. Default 10 s. */
  readonly stopTimeoutMs?: number | undefined;
  /** Shown in the broker's management UI. Default `outboxkit-relay-<pid>-<n>`. */
  readonly connectionName?: string | undefined;
  /**
   * Exchanges the relay declares each time it connects, before it publishes: the topology this
   * outbox publishes to, with types and alternate exchanges. Default none: rows of an exchange
   * that nobody declared are put off until it exists.
   */
  readonly exchanges?: readonly ExchangeDeclaration[] | undefined;
  readonly logger?: OutboxLogger | undefined;
}

/** The most lanes a relay runs; far above what one relay can use. */
const MAX_CONCURRENCY = 1000;

/** The most rows a claim takes: each is held in memory until its confirm. */
const ROWS_LIMIT = {
  max: 100_000,
  why: 'a claim holds its rows in memory until they are confirmed',
} as const;

/** Rows of one ordering key per batch, when `keyRunSize` is not given. */
export const DEFAULT_KEY_RUN_SIZE = 100;

/** Rows per batch and lanes when not given: what the benchmarks call the defaults. */
export const DEFAULT_BATCH_SIZE = 1000;
export const DEFAULT_CONCURRENCY = 4;
/** Default `publishTimeoutMs`, unless twice the heartbeat is longer. */
export const DEFAULT_PUBLISH_TIMEOUT_MS = 30_000;

/** Delay before a row is tried again, when `retry.backoff` is not given. */
export const DEFAULT_RELAY_BACKOFF = Object.freeze({ initialMs: 1000, maxMs: 300_000 });

/** Every option of `RelayOptions`, for the options table in docs/options.md. */
export const RELAY_OPTION_NAMES = optionNames<RelayOptions>()([
  'pool',
  'databaseUrl',
  'databaseTls',
  'amqpUrl',
  'amqpTls',
  'schema',
  'batchSize',
  'maxBatchBytes',
  'concurrency',
  'keyRunSize',
  'pollIntervalMs',
  'listen',
  'publishTimeoutMs',
  'heartbeatSeconds',
  'retry',
  'reconnectBackoff',
  'maxMessageBytes',
  'stopTimeoutMs',
  'connectionName',
  'exchanges',
  'logger',
]);

export type ResolvedRelayOptions = DefaultsFilled<
  Omit<
    RelayOptions,
    | 'pool'
    | 'databaseUrl'
    | 'databaseTls'
    | 'amqpTls'
    | 'retry'
    | 'connectionName'
    | 'reconnectBackoff'
  >
> &
  Pick<RelayOptions, 'pool' | 'databaseUrl' | 'databaseTls' | 'amqpTls' | 'connectionName'> & {
    readonly retry: DefaultsFilled<Omit<RelayRetryPolicy, 'backoff'>> & {
      readonly backoff: BackoffPolicy;
    };
    readonly reconnectBackoff: BackoffPolicy;
  };

/** Fills in defaults and rejects values the relay cannot work with, naming the option. */
export function resolveRelayOptions(options: RelayOptions): ResolvedRelayOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    // `new OutboxRelay()` would otherwise fail with a TypeError reading `retry` of undefined.
    throw new ConfigurationError(
      'options',
      'OutboxRelay takes an options object: { pool or databaseUrl, amqpUrl, ... }',
    );
  }
  rejectUnknownOptions(options, RELAY_OPTION_NAMES, {
    owner: 'OutboxRelay',
    renames: RENAMED_OPTIONS.relay,
  });
  const retry = nestedOptions(
    'retry',
    options.retry,
    RELAY_RETRY_OPTION_NAMES,
    "OutboxRelay's retry",
  );
  connectionNameOption(options.connectionName);
  if (!options.pool && !options.databaseUrl) {
    throw new ConfigurationError('databaseUrl', 'give either `pool` or `databaseUrl`');
  }
  if (options.pool && options.databaseUrl) {
    // Otherwise one would be ignored without a word, and which one is a guess.
    throw new ConfigurationError(
      'databaseUrl',
      'give either `pool` or `databaseUrl`, not both: the relay uses your `pool` as it is, or makes its own from the URL',
    );
  }
  // A handle the relay can never use would let start() resolve and the relay warn forever.
  if (options.pool !== undefined) pgPool('pool', options.pool);
  if (options.databaseUrl !== undefined) postgresUrl('databaseUrl', options.databaseUrl);
  if (options.databaseTls !== undefined && !options.databaseUrl) {
    throw new ConfigurationError(
      'databaseTls',
      'applies to the pool made from `databaseUrl`: set `ssl` on your own `pool` instead',
    );
  }
  const amqpUrl = amqpUrlList(options.amqpUrl);
  const heartbeatSeconds = heartbeatFor(amqpUrl, options.heartbeatSeconds);
  // A dead TCP link leaves confirms pending until the heartbeat notices: a shorter timeout would
  // retry messages the broker may still confirm, for no gain. Left out, it follows a long
  // heartbeat (one an `amqpUrl` may ask for) rather than refusing what the user did not set.
  const leastTimeoutMs = 2 * heartbeatSeconds * 1000;
  const publishTimeoutMs = durationMs(
    'publishTimeoutMs',
    options.publishTimeoutMs,
    Math.max(DEFAULT_PUBLISH_TIMEOUT_MS, leastTimeoutMs),
    {
      ms: MAX_PUBLISH_TIMEOUT_MS,
      why: "the relay's transactions set Postgres' idle_in_transaction_session_timeout to twice it plus 10 s, and Postgres refuses a value above 2147483647 ms",
    },
  );
  if (publishTimeoutMs < leastTimeoutMs) {
    throw new ConfigurationError(
      'publishTimeoutMs',
      `must be at least twice the heartbeat (${leastTimeoutMs} ms, for a heartbeat of ${heartbeatSeconds} s)`,
    );
  }
  return Object.freeze({
    ...options,
    amqpUrl,
    schema: options.schema ?? 'outboxkit',
    exchanges: exchangeDeclarations(options.exchanges ?? []),
    batchSize: positiveInteger('batchSize', options.batchSize, DEFAULT_BATCH_SIZE, ROWS_LIMIT),
    maxBatchBytes: positiveInteger('maxBatchBytes', options.maxBatchBytes, 4 * 1024 * 1024),
    concurrency: positiveInteger('concurrency', options.concurrency, DEFAULT_CONCURRENCY, {
      max: MAX_CONCURRENCY,
      why: 'each lane holds an AMQP channel (RabbitMQ allows 2047 a connection) and Postgres connections',
    }),
    keyRunSize: positiveInteger('keyRunSize', options.keyRunSize, DEFAULT_KEY_RUN_SIZE, ROWS_LIMIT),
    pollIntervalMs: durationMs('pollIntervalMs', options.pollIntervalMs, 1000),
    listen: booleanOption('listen', options.listen, true),
    publishTimeoutMs,
    heartbeatSeconds,
    retry: Object.freeze({
      maxAttempts: maxAttemptsOption('retry.maxAttempts', retry?.maxAttempts, 10),
      backoff: backoffOption('retry.backoff', retry?.backoff, DEFAULT_RELAY_BACKOFF),
      unroutable: booleanOption('retry.unroutable', retry?.unroutable, false),
    }),
    reconnectBackoff: backoffOption('reconnectBackoff', options.reconnectBackoff, {
      initialMs: 100,
      maxMs: 10_000,
    }),
    maxMessageBytes: positiveInteger(
      'maxMessageBytes',
      options.maxMessageBytes,
      MAX_MESSAGE_BYTES_LIMIT.max,
      MAX_MESSAGE_BYTES_LIMIT,
    ),
    stopTimeoutMs: durationMs('stopTimeoutMs', options.stopTimeoutMs, 10_000),
    logger: resolveLogger(options.logger, consoleLogger),
  });
}
