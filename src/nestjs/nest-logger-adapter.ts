import { Logger, type LoggerService } from '@nestjs/common';
import { ConfigurationError } from '../errors/configuration-error.js';
import { type OutboxLogger, silentLogger } from '../util/logger.js';
import {
  describeLogger,
  LOGGER_METHODS,
  missingMethods,
  missingText,
  resolveLogger,
} from '../util/resolve-logger.js';

/** The context Nest prints beside outboxkit's log lines. */
export const OUTBOX_LOG_CONTEXT = 'Outbox';

/**
 * Makes an `OutboxLogger` from the module's `logger` option: Nest's `Logger` by default, a
 * Nest `LoggerService` adapted, an `OutboxLogger` as it is (a pino-shaped one wrapped, see
 * `resolveLogger`), or nothing for `false`.
 */
export function outboxLoggerFrom(
  option: LoggerService | OutboxLogger | false | undefined,
): OutboxLogger {
  if (option === false) return silentLogger;
  if (option === undefined) return adaptNestLogger(new Logger(OUTBOX_LOG_CONTEXT));
  if (missingMethods(option, LOGGER_METHODS).length === 0) {
    return resolveLogger(option as OutboxLogger, () => silentLogger);
  }
  // Checked here, at boot: a logger without `log` would throw from a background loop, and
  // Nest would end the process long after the module seemed to start.
  const missing = missingMethods(option, NEST_LOGGER_METHODS);
  if (missing.length > 0) {
    throw new ConfigurationError(
      'logger',
      `must be a Nest LoggerService (with ${NEST_LOGGER_METHODS.join(', ')} functions), a logger with ${LOGGER_METHODS.join(', ')} functions, or false; got ${describeLogger(option)}${missingText(option, missing)}`,
    );
  }
  return adaptNestLogger(option as LoggerService);
}

/** The methods a Nest `LoggerService` must have; `debug` and the rest are optional. */
const NEST_LOGGER_METHODS = ['log', 'warn', 'error'] as const;

/**
 * Adapts a Nest logger. outboxkit's structured context goes into the message as JSON: Nest's
 * logger would take a trailing object for a second message, and a trailing string for its own
 * context name.
 */
export function adaptNestLogger(logger: LoggerService): OutboxLogger {
  const text = (message: string, context?: Record<string, unknown>) =>
    context && Object.keys(context).length > 0 ? `${message} ${JSON.stringify(context)}` : message;
  return {
    debug: (message, context) => logger.debug?.(text(message, context)),
    info: (message, context) => logger.log(text(message, context)),
    warn: (message, context) => logger.warn(text(message, context)),
    error: (message, context) => logger.error(text(message, context)),
  };
}
