import { StartupError } from '../errors/startup-error.js';
import { errorMessage, redactUrl } from '../util/logger.js';

/** SQLSTATEs that no retry mends: wrong password or no such role, and no such database. */
const AUTH_REFUSED = new Set(['28P01', '28000']);
const DATABASE_NOT_FOUND = '3D000';

/**
 * The `StartupError` for a Postgres error that a retry cannot mend, or undefined for one that
 * may pass (refused or lost connection, timeout, a server starting or shutting down).
 * @param where the redacted URL, or a description of the pool, for the message.
 */
export function databaseMisconfiguration(error: unknown, where: string): StartupError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && AUTH_REFUSED.has(code)) {
    return new StartupError(
      'database-auth-refused',
      'postgres',
      `Postgres at ${where} refused the login (${errorMessage(error)}): check the user and password of the database URL`,
      error,
    );
  }
  if (code === DATABASE_NOT_FOUND) {
    return new StartupError(
      'database-not-found',
      'postgres',
      `Postgres at ${where}: ${errorMessage(error)}: check the database name of the URL, or create the database`,
      error,
    );
  }
  return undefined;
}

/**
 * The `StartupError` for a failed RabbitMQ connect that a retry cannot mend: credentials
 * refused (403) or a virtual host that does not exist or the user may not open (530, which
 * amqplib reports as a `ConnectionClose` where it expected `ConnectionOpenOk`).
 */
export function brokerMisconfiguration(error: unknown, url: string): StartupError | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (/\b403\b.*ACCESS[-_]REFUSED/.test(message)) {
    return new StartupError(
      'broker-auth-refused',
      'rabbitmq',
      `RabbitMQ at ${redactUrl(url)} refused the login (403 ACCESS_REFUSED): check the user and password of the AMQP URL`,
      error,
    );
  }
  if (/\b530\b|NOT[-_]ALLOWED|Expected ConnectionOpenOk; got <ConnectionClose/.test(message)) {
    return new StartupError(
      'broker-vhost-refused',
      'rabbitmq',
      `RabbitMQ at ${redactUrl(url)} refused the virtual host "${vhostOf(url)}" (it does not exist, or the user may not use it): check the path of the AMQP URL, or create the vhost and grant the user access`,
      error,
    );
  }
  return undefined;
}

function vhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    return path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1));
  } catch {
    return '?';
  }
}
