import { ConfigurationError } from '../errors/configuration-error.js';
import { type PinoLike, pinoOutboxLogger } from '../pino/pino-outbox-logger.js';
import type { OutboxLogger } from './logger.js';

/** The methods outboxkit calls on a logger. */
export const LOGGER_METHODS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * The `logger` option as outboxkit uses it. A pino logger, or nestjs-pino's `PinoLogger`, fits
 * `OutboxLogger`'s type, but pino takes a string first argument as the message and drops the
 * context object after it: given as it is, every field of outboxkit's lines would be lost
 * without a word. Such a logger is wrapped with `pinoOutboxLogger`, as the docs say to do.
 *
 * Anything else must have all four methods, checked here at construction: a logger without
 * `warn` would otherwise throw from inside a timer or an amqplib event and end the process.
 */
export function resolveLogger(
  logger: OutboxLogger | undefined,
  fallback: () => OutboxLogger,
  option = 'logger',
): OutboxLogger {
  if (logger === undefined) return fallback();
  const missing = missingMethods(logger, LOGGER_METHODS);
  if (missing.length > 0) {
    throw new ConfigurationError(
      option,
      `must be a logger with ${LOGGER_METHODS.join(', ')} functions (or a pino logger), got ${describeLogger(logger)}${missingText(logger, missing)}`,
    );
  }
  return isPinoShaped(logger) ? pinoOutboxLogger(logger) : logger;
}

/** The names of `methods` that `value` lacks as functions (all of them for a non-object). */
export function missingMethods(value: unknown, methods: readonly string[]): string[] {
  const isObject = (typeof value === 'object' && value !== null) || typeof value === 'function';
  return methods.filter(
    (m) => !isObject || typeof (value as Record<string, unknown>)[m] !== 'function',
  );
}

/** "without warn, error" for an object; nothing more for a string, a number or null. */
export function missingText(value: unknown, missing: readonly string[]): string {
  const isObject = (typeof value === 'object' && value !== null) || typeof value === 'function';
  return isObject ? ` without ${missing.join(', ')}` : '';
}

/** The value for a message: a string quoted, an object as "an object". */
export function describeLogger(value: unknown): string {
  if (typeof value === 'string') return `${JSON.stringify(value)} (a string)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return `${String(value)} (a ${typeof value})`;
}

function isPinoShaped(logger: object): logger is PinoLike {
  const l = logger as Record<string, unknown>;
  // pino's Logger has child() and bindings(); nestjs-pino's PinoLogger has setContext() and
  // assign(). A plain OutboxLogger (pinoOutboxLogger's own result included) has none of them.
  return (
    (typeof l.child === 'function' && typeof l.bindings === 'function') ||
    (typeof l.setContext === 'function' && typeof l.assign === 'function')
  );
}
