import { clearInterval, setInterval } from 'node:timers';
import type pg from 'pg';
import { amqpUrlList } from '../amqp/amqp-urls.js';
import { OUTBOX_GAUGES_TIMEOUT_MS } from '../metrics/outbox-gauge-reader.js';
import { OutboxRelay } from '../relay/outbox-relay.js';
import { DEFAULT_RELAY_BACKOFF, type RelayOptions } from '../relay/relay-options.js';
import type { RelayStats } from '../relay/relay-stats.js';
import { createPool } from '../sql/create-pool.js';
import { databaseTlsConfig } from '../sql/database-tls.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import type { BackoffPolicy } from '../util/backoff.js';
import { consoleLogger, errorMessage, type OutboxLogger, redactUrl } from '../util/logger.js';
import {
  AMQP_URL_OPTION,
  amqpUrlsOf,
  COMMON_OPTIONS,
  databaseUrlOf,
  durationOf,
  heartbeatSecondsOf,
  parseFlags,
  positiveIntegerOf,
  printHelp,
  schemaOf,
  usageErrorFor,
} from './cli-args.js';
import { type CliCommand, EXIT_OK } from './cli-command.js';
import { AMQP_TLS_HELP, DATABASE_TLS_HELP, TLS_FLAGS_OF_OPTION, tlsFilesOf } from './cli-tls.js';
import { type RelayHttpServer, serveRelayHttp } from './relay-http-server.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: outboxkit relay [options]

Publishes committed outbox rows to RabbitMQ and deletes each one once the broker confirmed it,
until SIGTERM or SIGINT: then it finishes what is in flight and exits with status 0. Several
relays may run on one outbox. Logs JSON lines on stderr.

Options:
  --database-url <url>     Postgres URL (default: $DATABASE_URL)
  --amqp-url <url>         RabbitMQ URL; repeat it or separate with commas for a cluster's nodes (default: $AMQP_URL)
  --schema <name>          schema of the outboxkit tables (default: outboxkit)
  --concurrency <n>        lanes, each with its own channel and up to two batches in flight (default: 4)
  --batch-size <n>         rows claimed per batch at most (default: 1000)
  --max-batch-bytes <n>    payload bytes a claim aims at (default: 4194304, 4 MiB)
  --key-run-size <n>       rows of one ordering key per batch, sent one after another (default: 100)
  --poll-interval <time>   poll this often when no notification arrives (default: 1s)
  --no-listen              do not LISTEN for commits; rely on polling alone
  --publish-timeout <time> wait this long for a batch's confirms (default: 30s)
  --heartbeat <time>       AMQP heartbeat, whole seconds: 10 or 10s (default: 10s)
  --max-attempts <n>       times the broker may reject a row before it is parked (default: 10)
  --retry-initial <time>   delay before a row is tried again, doubling (default: 1s)
  --retry-max <time>       longest delay between tries of a row (default: 5m)
  --retry-unroutable       retry a row returned as unroutable, counting towards --max-attempts,
                           instead of parking it at once
  --max-message-bytes <n>  park messages larger than this (default: 134217728, RabbitMQ's)
  --connection-name <name> name shown in RabbitMQ's management UI
  --stop-timeout <time>    on SIGTERM, wait this long for confirms in flight (default: 10s)
  --stats-interval <time>  log the counts this often when they changed; 0 for never (default: 1m)
  --log-level <level>      debug, info, warn or error (default: info)
  --http-port <n>          serve /health, /live and /metrics on this port (default: none;
                           0 for any free port, which the "relay http" log line names)
  --http-host <address>    address of those endpoints (default: 127.0.0.1; 0.0.0.0 in a
                           container, for probes and Prometheus)
  -h, --help               show this help

A <time> is milliseconds (500, 500ms), seconds (2s), minutes (1m), hours (1h) or days (1d).
${DATABASE_TLS_HELP}${AMQP_TLS_HELP}`;

/** The flags of `outboxkit relay`; docs/options.md lists them. */
export const RELAY_COMMAND_OPTIONS = {
  ...COMMON_OPTIONS,
  ...AMQP_URL_OPTION,
  concurrency: { type: 'string' },
  'batch-size': { type: 'string' },
  'max-batch-bytes': { type: 'string' },
  'key-run-size': { type: 'string' },
  'poll-interval': { type: 'string' },
  'no-listen': { type: 'boolean' },
  'publish-timeout': { type: 'string' },
  heartbeat: { type: 'string' },
  'max-attempts': { type: 'string' },
  'retry-initial': { type: 'string' },
  'retry-max': { type: 'string' },
  'retry-unroutable': { type: 'boolean' },
  'max-message-bytes': { type: 'string' },
  'connection-name': { type: 'string' },
  'stop-timeout': { type: 'string' },
  'stats-interval': { type: 'string' },
  'log-level': { type: 'string' },
  'http-port': { type: 'string' },
  'http-host': { type: 'string' },
} as const;

/** Which flag sets which relay option, to name the flag when the relay rejects a value. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  ...TLS_FLAGS_OF_OPTION,
  databaseUrl: '--database-url',
  amqpUrl: '--amqp-url',
  schema: '--schema',
  concurrency: '--concurrency',
  batchSize: '--batch-size',
  maxBatchBytes: '--max-batch-bytes',
  keyRunSize: '--key-run-size',
  pollIntervalMs: '--poll-interval',
  publishTimeoutMs: '--publish-timeout',
  heartbeatSeconds: '--heartbeat',
  'retry.maxAttempts': '--max-attempts',
  'retry.backoff.initialMs': '--retry-initial',
  'retry.backoff.maxMs': '--retry-max',
  maxMessageBytes: '--max-message-bytes',
  connectionName: '--connection-name',
  stopTimeoutMs: '--stop-timeout',
};

const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/** `outboxkit relay`: the relay as a long-running process. */
export const relayCommand: CliCommand = {
  name: 'relay',
  summary: 'publish outbox rows to RabbitMQ until stopped',
  help: HELP,
  async run(argv, env) {
    const { values } = parseFlags(argv, RELAY_COMMAND_OPTIONS);
    if (values.help) return printHelp(HELP);
    const level = values['log-level'] ?? 'info';
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
    }
    const logger = consoleLogger(level as LogLevel);
    const databaseTls = tlsFilesOf('database', values, env);
    const amqpTls = tlsFilesOf('amqp', values, env);
    const options: RelayOptions = {
      databaseUrl: databaseUrlOf(values['database-url'], env),
      ...(databaseTls && { databaseTls }),
      amqpUrl: amqpUrlsOf(values['amqp-url'], env),
      ...(amqpTls && { amqpTls }),
      schema: schemaOf(values.schema),
      concurrency: positiveIntegerOf('--concurrency', values.concurrency),
      batchSize: positiveIntegerOf('--batch-size', values['batch-size']),
      maxBatchBytes: positiveIntegerOf('--max-batch-bytes', values['max-batch-bytes']),
      keyRunSize: positiveIntegerOf('--key-run-size', values['key-run-size']),
      pollIntervalMs: durationOf('--poll-interval', values['poll-interval']),
      listen: !values['no-listen'],
      publishTimeoutMs: durationOf('--publish-timeout', values['publish-timeout']),
      heartbeatSeconds: heartbeatSecondsOf('--heartbeat', values.heartbeat),
      retry: {
        maxAttempts: positiveIntegerOf('--max-attempts', values['max-attempts']),
        backoff: backoffOf(values['retry-initial'], values['retry-max']),
        ...(values['retry-unroutable'] && { unroutable: true }),
      },
      maxMessageBytes: positiveIntegerOf('--max-message-bytes', values['max-message-bytes']),
      connectionName: values['connection-name'],
      stopTimeoutMs: durationOf('--stop-timeout', values['stop-timeout']),
      logger,
    };
    // Every flag is checked before anything is logged: a bad one is a usage error, not a start.
    const httpPort = portOf(values['http-port']);
    const statsIntervalMs =
      durationOf('--stats-interval', values['stats-interval'], { allowZero: true }) ?? 60_000;

    let relay: OutboxRelay;
    try {
      // Flags not given are undefined, which the relay fills with its defaults.
      relay = new OutboxRelay(options);
    } catch (error) {
      throw usageErrorFor(error, FLAG_OF_OPTION);
    }
    // Listen before starting, so a signal that arrives during start stops the relay instead of
    // killing the process with rows claimed.
    const stopSignal = nextStopSignal(logger);
    logger.info('relay starting', {
      database: redactUrl(relay.options.databaseUrl ?? ''),
      amqp: amqpUrlList(relay.options.amqpUrl).map(redactUrl),
      pid: process.pid,
    });
    await relay.start();
    let http: RelayHttpServer | undefined;
    let metricsPool: pg.Pool | undefined;
    if (httpPort !== undefined) {
      // One connection of its own for the outbox gauges, so a scrape never waits for a lane.
      metricsPool = createPool(
        {
          connectionString: relay.options.databaseUrl,
          max: 1,
          application_name: 'outboxkit-relay-metrics',
          connectionTimeoutMillis: OUTBOX_GAUGES_TIMEOUT_MS,
          ...databaseTlsConfig(relay.options.databaseUrl, relay.options.databaseTls),
        },
        logger,
      );
      try {
        http = await serveRelayHttp({
          relay,
          port: httpPort,
          host: values['http-host'] ?? '127.0.0.1',
          pool: limitedStatements(metricsPool, OUTBOX_GAUGES_TIMEOUT_MS),
          schema: relay.options.schema,
          logger,
        });
      } catch (error) {
        await relay.stop();
        await metricsPool.end().catch(() => {});
        const code = (error as { code?: unknown }).code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
          throw new UsageError(
            `--http-port ${httpPort} on --http-host ${values['http-host'] ?? '127.0.0.1'}: ${errorMessage(error)}; give another --http-port (0 for any free one)${code === 'EADDRNOTAVAIL' ? ' or an address of this machine as --http-host' : ''}`,
          );
        }
        throw error;
      }
      const served = { url: http.url, paths: ['/health', '/live', '/metrics'] };
      // A port the system chose is known from this line only: seen at `--log-level warn` too.
      if (httpPort === 0) logger.warn('relay http', served);
      else logger.info('relay http', served);
    }
    const stopStats = logStatsEvery(statsIntervalMs, () => relay.stats(), logger);
    const misconfigured = misconfigurationOf(relay);
    const ending = await Promise.race([
      stopSignal.then((signal) => ({ signal, error: undefined })),
      misconfigured.found.then((error) => ({ signal: undefined, error })),
    ]);
    misconfigured.stop();
    stopStats();
    logger.info('relay stopping', {
      ...(ending.signal && { signal: ending.signal }),
      ...(ending.error && { reason: 'misconfigured' }),
      stopTimeoutMs: relay.options.stopTimeoutMs,
    });
    try {
      await relay.stop();
    } finally {
      // After the relay: /health answers 503 while it stops, so a load balancer looks away.
      await http?.close();
      await metricsPool?.end().catch(() => {});
    }
    // Exits 1 with the fix, as a misconfiguration found at start does: a process manager then
    // restarts it (CrashLoopBackOff) instead of keeping a relay that publishes nothing.
    if (ending.error) throw ending.error;
    return EXIT_OK;
  },
};

/** How often the CLI relay looks for a misconfiguration its claims found after the start. */
const MISCONFIGURATION_CHECK_MS = 500;

/**
 * Resolves with the error once the relay's claims find the database misconfigured (a schema not
 * migrated, a login or database refused): what the start checks refuse, found later because the
 * database was down at start.
 */
function misconfigurationOf(relay: OutboxRelay): { found: Promise<Error>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const found = new Promise<Error>((resolve) => {
    timer = setInterval(() => {
      const problem = relay.databaseProblem;
      if (problem?.kind === 'misconfigured') resolve(problem.error);
    }, MISCONFIGURATION_CHECK_MS);
  });
  return { found, stop: () => clearInterval(timer) };
}

/**
 * The relay's `retry.backoff` from `--retry-initial` and `--retry-max`; `undefined` when neither
 * is given. One of them alone keeps the default of the other (1 s, 5 min).
 */
function backoffOf(
  initial: string | undefined,
  max: string | undefined,
): BackoffPolicy | undefined {
  if (initial === undefined && max === undefined) return undefined;
  const initialMs = durationOf('--retry-initial', initial) ?? DEFAULT_RELAY_BACKOFF.initialMs;
  const maxMs = durationOf('--retry-max', max) ?? Math.max(DEFAULT_RELAY_BACKOFF.maxMs, initialMs);
  if (maxMs < initialMs) throw new UsageError('--retry-max must be at least --retry-initial');
  return { initialMs, maxMs };
}

/** `--http-port`: a port number, 0 for any free one; undefined when not given. */
function portOf(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n > 65_535) {
    throw new UsageError(
      `--http-port must be a port number (0 to 65535), got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * Resolves with the first SIGTERM or SIGINT. A second one means the operator will not wait for
 * a graceful stop: exit at once. Rows still claimed then are released by Postgres when the
 * connections drop, and published again later (at least once, never lost).
 */
function nextStopSignal(logger: OutboxLogger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) {
        logger.warn('second signal; exiting without waiting for confirms', { signal });
        process.exit(130);
      }
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

/** Logs the relay's counts every `intervalMs` when they changed; returns a function to stop. */
function logStatsEvery(
  intervalMs: number,
  stats: () => Readonly<RelayStats>,
  logger: OutboxLogger,
): () => void {
  if (intervalMs === 0) return () => {};
  let last = JSON.stringify(stats());
  const timer = setInterval(() => {
    const current = stats();
    const now = JSON.stringify(current);
    if (now === last) return;
    last = now;
    logger.info('relay stats', { ...current });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * Each statement in a transaction of its own, limited on the server: a gauge read stuck behind a
 * lock ends there, freeing the one connection. Not a `statement_timeout` startup parameter,
 * which PgBouncer refuses (and the gauges were then never read behind it).
 */
function limitedStatements(pool: pg.Pool, timeoutMs: number): PgQueryable {
  return {
    async query(text, params) {
      const client = await pool.connect();
      let broken = false;
      try {
        await client.query(`BEGIN; SET LOCAL statement_timeout = ${Math.trunc(timeoutMs)}`);
        const result = await client.query(text, params);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        // A session whose ROLLBACK failed is not given to the next scrape.
        client.release(broken);
      }
    },
  };
}
