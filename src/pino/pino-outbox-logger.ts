import { ConfigurationError } from '../errors/configuration-error.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { describeValue } from '../util/describe-value.js';
import type { OutboxLogger } from '../util/logger.js';

/**
 * The part of a pino `Logger` outboxkit uses: pino's own, nestjs-pino's `PinoLogger`, and any
 * logger with pino's `(fields, message)` signature fit. Declared here so outboxkit never imports
 * pino (a test checks that the real one fits).
 */
export interface PinoLike {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/** Options of `pinoOutboxLogger`. */
export interface PinoOutboxLoggerOptions {
  /**
   * Fields put on every line, beside the application's own (its `base`, `mixin` and child
   * bindings, and nestjs-pino's request fields). Default `{ component: 'outboxkit' }`; `{}` for
   * none.
   */
  readonly bindings?: Readonly<Record<string, unknown>> | undefined;
}

/** Every option of `PinoOutboxLoggerOptions`. */
const PINO_OUTBOX_LOGGER_OPTION_NAMES = optionNames<PinoOutboxLoggerOptions>()(['bindings']);

/**
 * An `OutboxLogger` that writes into the application's pino logger: outboxkit's context
 * becomes fields of the line (`{ count: 3, reason: '...' }`), not text in the message, and the
 * line carries whatever the application's logger adds. Give it to the `logger` option of the
 * relay, the consumer host or the Nest module.
 *
 * nestjs-pino's `PinoLogger` has pino's signature and fits too: inject it into the Nest
 * module's `forRootAsync` factory and give `pinoOutboxLogger(pinoLogger)` as `logger`. Wrap the
 * `PinoLogger` itself, not its `.logger`: it finds the current request's logger on each call,
 * so lines logged while serving a request carry its `req`.
 *
 * @example
 * import pino from 'pino';
 * import { pinoOutboxLogger } from 'outboxkit/pino';
 *
 * const relay = new OutboxRelay({ pool, amqpUrl, logger: pinoOutboxLogger(pino()) });
 */
export function pinoOutboxLogger(
  logger: PinoLike,
  loggerOptions?: PinoOutboxLoggerOptions,
): OutboxLogger {
  // Checked now: a wrong logger would otherwise fail at the first line logged, deep in a relay.
  const given = logger as Partial<Record<keyof PinoLike, unknown>> | null | undefined;
  if (
    given === null ||
    typeof given !== 'object' ||
    LEVELS.some((level) => typeof given[level] !== 'function')
  ) {
    throw new ConfigurationError(
      'logger',
      `must be a pino logger (pino(), a child of one, or nestjs-pino's PinoLogger), got ${describeValue(logger)}`,
    );
  }
  const options = optionsObject(
    'options',
    loggerOptions,
    PINO_OUTBOX_LOGGER_OPTION_NAMES,
    'pinoOutboxLogger',
  );
  const bindingsGiven = options.bindings;
  if (
    bindingsGiven !== undefined &&
    (bindingsGiven === null || typeof bindingsGiven !== 'object' || Array.isArray(bindingsGiven))
  ) {
    throw new ConfigurationError(
      'bindings',
      `must be an object of fields for every line, such as { component: 'outboxkit' }; got ${describeValue(bindingsGiven)}`,
    );
  }
  const bindings = options.bindings ?? { component: 'outboxkit' };
  const fields = (context?: Record<string, unknown>) =>
    context ? { ...bindings, ...context } : bindings;
  return {
    debug: (message, context) => logger.debug(fields(context), message),
    info: (message, context) => logger.info(fields(context), message),
    warn: (message, context) => logger.warn(fields(context), message),
    error: (message, context) => logger.error(fields(context), message),
  };
}
