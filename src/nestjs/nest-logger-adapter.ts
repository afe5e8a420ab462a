import { Logger, type LoggerService } from '@nestjs/common';
import { type OutboxLogger, silentLogger } from '../util/logger.js';
import { resolveLogger } from '../util/resolve-logger.js';

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
  if (isOutboxLogger(option)) return resolveLogger(option, () => option);
  return adaptNestLogger(option);
}

function isOutboxLogger(value: LoggerService | OutboxLogger): value is OutboxLogger {
  return typeof (value as Partial<OutboxLogger>).info === 'function';
}

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
