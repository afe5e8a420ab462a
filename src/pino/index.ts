/**
 * `outboxkit/pino`: outboxkit's logs in the application's pino logger (or nestjs-pino's
 * `PinoLogger`). pino is an optional peer dependency; this entry point never imports it.
 */
export {
  type PinoLike,
  type PinoOutboxLoggerOptions,
  pinoOutboxLogger,
} from './pino-outbox-logger.js';
