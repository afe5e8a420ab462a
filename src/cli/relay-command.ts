import { amqpUrlList } from '../amqp/amqp-urls.js';
import { OutboxRelay } from '../relay/outbox-relay.js';
import type { RelayOptions } from '../relay/relay-options.js';
import type { RelayStats } from '../relay/relay-stats.js';
import { consoleLogger, type OutboxLogger, redactUrl } from '../util/logger.js';
import {
  amqpUrlOf,
  COMMON_OPTIONS,
  databaseUrlOf,
  durationOf,
  parseFlags,
  positiveIntegerOf,
  printHelp,
  schemaOf,
  usageErrorFor,
} from './cli-args.js';
import { type CliCommand, EXIT_OK } from './cli-command.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: outboxkit relay [options]

Publishes committed outbox rows to RabbitMQ and deletes each one once the broker confirmed it,
until SIGTERM or SIGINT: then it finishes what is in flight and exits with status 0. Several
relays may run on one outbox. Logs JSON lines on stderr.

Options:
  --database-url <url>     Postgres URL (default: $DATABASE_URL)
  --amqp-url <url>         RabbitMQ URL (default: $AMQP_URL)
  --schema <name>          schema of the outboxkit tables (default: outboxkit)
  --concurrency <n>        batches in flight at once (default: 4)
  --batch-size <n>         rows claimed per batch (default: 500)
  --poll-interval <time>   poll this often when no notification arrives (default: 1s)
  --no-listen              do not LISTEN for commits; rely on polling alone
  --publish-timeout <time> wait this long for a batch's confirms (default: 30s)
  --heartbeat <seconds>    AMQP heartbeat (default: 10)
  --max-attempts <n>       attempts before a row is parked (default: 10)
  --stop-timeout <time>    on SIGTERM, wait this long for confirms in flight (default: 10s)
  --stats-interval <time>  log the counts this often when they changed; 0 for never (default: 1m)
  --log-level <level>      debug, info or warn (default: info)
  -h, --help               show this help

A <time> is milliseconds (500, 500ms), seconds (2s) or minutes (1m).
`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  'amqp-url': { type: 'string' },
  concurrency: { type: 'string' },
  'batch-size': { type: 'string' },
  'poll-interval': { type: 'string' },
  'no-listen': { type: 'boolean' },
  'publish-timeout': { type: 'string' },
  heartbeat: { type: 'string' },
  'max-attempts': { type: 'string' },
  'stop-timeout': { type: 'string' },
  'stats-interval': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/** Which flag sets which relay option, to name the flag when the relay rejects a value. */
const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  databaseUrl: '--database-url',
  amqpUrl: '--amqp-url',
  schema: '--schema',
  concurrency: '--concurrency',
  batchSize: '--batch-size',
  pollIntervalMs: '--poll-interval',
  publishTimeoutMs: '--publish-timeout',
  heartbeatSeconds: '--heartbeat',
  maxAttempts: '--max-attempts',
  stopTimeoutMs: '--stop-timeout',
};

const LOG_LEVELS = ['debug', 'info', 'warn'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];

/** `outboxkit relay`: the relay as a long-running process. */
export const relayCommand: CliCommand = {
  name: 'relay',
  summary: 'publish outbox rows to RabbitMQ until stopped',
  help: HELP,
  async run(argv, env) {
    const { values } = parseFlags(argv, OPTIONS);
    if (values.help) return printHelp(HELP);
    const level = values['log-level'] ?? 'info';
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
    }
    const logger = consoleLogger(level as LogLevel);
    const options: RelayOptions = {
      databaseUrl: databaseUrlOf(values['database-url'], env),
      amqpUrl: amqpUrlOf(values['amqp-url'], env),
      schema: schemaOf(values.schema),
      concurrency: positiveIntegerOf('--concurrency', values.concurrency),
      batchSize: positiveIntegerOf('--batch-size', values['batch-size']),
      pollIntervalMs: durationOf('--poll-interval', values['poll-interval']),
      listen: !values['no-listen'],
      publishTimeoutMs: durationOf('--publish-timeout', values['publish-timeout']),
      heartbeatSeconds: positiveIntegerOf('--heartbeat', values.heartbeat),
      maxAttempts: positiveIntegerOf('--max-attempts', values['max-attempts']),
      stopTimeoutMs: durationOf('--stop-timeout', values['stop-timeout']),
      logger,
    };
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
    const stopStats = logStatsEvery(statsIntervalMs, relay.stats, logger);
    const signal = await stopSignal;
    stopStats();
    logger.info('relay stopping', { signal, stopTimeoutMs: relay.options.stopTimeoutMs });
    await relay.stop();
    return EXIT_OK;
  },
};

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
function logStatsEvery(intervalMs: number, stats: RelayStats, logger: OutboxLogger): () => void {
  if (intervalMs === 0) return () => {};
  let last = JSON.stringify(stats);
  const timer = setInterval(() => {
    const now = JSON.stringify(stats);
    if (now === last) return;
    last = now;
    logger.info('relay stats', { ...stats });
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
