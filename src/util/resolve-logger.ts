import { type PinoLike, pinoOutboxLogger } from '../pino/pino-outbox-logger.js';
import type { OutboxLogger } from './logger.js';

/**
 * The `logger` option as outboxkit uses it. A pino logger, or nestjs-pino's `PinoLogger`, fits
 * `OutboxLogger`'s type, but pino takes a string first argument as the message and drops the
 * context object after it: given as it is, every field of outboxkit's lines would be lost
 * without a word. Such a logger is wrapped with `pinoOutboxLogger`, as the docs say to do.
 */
export function resolveLogger(
  logger: OutboxLogger | undefined,
  fallback: () => OutboxLogger,
): OutboxLogger {
  if (logger === undefined) return fallback();
  return isPinoShaped(logger) ? pinoOutboxLogger(logger) : logger;
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
