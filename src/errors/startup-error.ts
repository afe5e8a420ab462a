import { OutboxkitError } from './outboxkit-error.js';

/** What is wrong, as a stable `code`: each says a setting must change, not that a service is down. */
export type StartupErrorCode =
  | 'schema-not-migrated'
  | 'schema-outdated'
  | 'database-auth-refused'
  | 'database-not-found'
  /** The pool was ended, or the Kysely instance destroyed, before start. */
  | 'database-closed'
  /**
   * The database role lacks a privilege on outboxkit's schema or tables (Postgres' 42501): the
   * start checks name each, with its GRANT.
   */
  | 'database-privilege-missing'
  /** Only where the start cannot go on without Postgres: the Nest module's `migrate: true`. */
  | 'database-unreachable'
  | 'broker-auth-refused'
  | 'broker-vhost-refused'
  /** The user may not declare the consumer's queues or exchanges (403 on a declare). */
  | 'broker-access-refused'
  /** A vhost's or user's limit (`max-queues`) refused a declare. */
  | 'broker-limit-reached'
  /**
   * The consumer host's ORM adapter (`transactions`) could not open a transaction while the
   * database answered: the ORM is not initialized, is closed, or was given the wrong object.
   */
  | 'orm-transaction-failed'
  | 'database-tls-refused'
  | 'broker-tls-refused';

/**
 * A relay, consumer host or the Nest module refused to start because of a misconfiguration
 * that retrying cannot mend: the schema is not migrated, or Postgres or RabbitMQ refused the
 * credentials or the database or virtual host, or TLS failed (a server certificate that does
 * not chain to the given CA, a client certificate the server refuses). A service that is merely down does not cause
 * it: start goes on, and connects once the service is back. The one exception is the Nest
 * module's `migrate: true`, which needs Postgres to migrate: `database-unreachable` after 5 s. The message says what to do; URLs
 * in it have their password hidden.
 *
 * @example
 * try {
 *   await relay.start();
 * } catch (error) {
 *   if (error instanceof StartupError) console.error(error.message); // names the fix
 *   throw error;
 * }
 */
export class StartupError extends OutboxkitError {
  declare readonly code: StartupErrorCode;
  /** Which side is misconfigured. */
  readonly service: 'postgres' | 'rabbitmq';

  constructor(
    code: StartupErrorCode,
    service: 'postgres' | 'rabbitmq',
    message: string,
    cause?: unknown,
  ) {
    super(code, message, { cause });
    this.service = service;
  }
}
