import { isPrivilegeRefusal } from '../consumer/database-errors.js';
import { StartupError } from '../errors/startup-error.js';
import { type TlsFailure, tlsAdvice, tlsFailure } from '../errors/tls-failure.js';
import { errorMessage, redactUrl } from '../util/logger.js';

/** SQLSTATEs that no retry mends: wrong password or no such role, and no such database. */
const AUTH_REFUSED = new Set(['28P01', '28000']);
const DATABASE_NOT_FOUND = '3D000';
/**
 * What pg says of an ended pool and Kysely of a destroyed instance: every statement fails at
 * once, for good, which a start would otherwise take for a database that is down.
 */
const CLOSED_HANDLE =
  /^(Cannot use a pool after calling end on the pool|driver has already been destroyed)$/;

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
      `Postgres at ${where} refused the login (${errorMessage(error)}): ${
        // pg_hba.conf allows this login over TLS only ("hostssl"): the fix is TLS, not a password.
        /no encryption/.test(errorMessage(error))
          ? 'the server accepts this login over TLS only: give `databaseTls` (or sslmode=verify-full in the URL)'
          : 'check the user and password of the database URL'
      }`,
      error,
    );
  }
  const tls = databaseTlsFailure(error);
  if (tls) {
    return new StartupError(
      'database-tls-refused',
      'postgres',
      `Postgres at ${where}: TLS failed: ${tls.reason} (${tls.code}): ${tlsAdvice(tls, 'databaseTls')}`,
      error,
    );
  }
  if (error instanceof Error && CLOSED_HANDLE.test(error.message)) {
    return new StartupError(
      'database-closed',
      'postgres',
      `the database handle (${where}) is closed: ${error.message}. Close the pool or the Kysely instance after stopping what uses it, not before starting it`,
      error,
    );
  }
  if (isPrivilegeRefusal(error)) {
    return new StartupError(
      'database-privilege-missing',
      'postgres',
      `Postgres at ${where}: ${errorMessage(error)}: the database role lacks a privilege outboxkit needs; grant what docs/operations.md, "Database roles", lists`,
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
  const tls = tlsFailure(error);
  if (tls) {
    return new StartupError(
      'broker-tls-refused',
      'rabbitmq',
      `RabbitMQ at ${redactUrl(url)}: TLS failed: ${tls.reason} (${tls.code}): ${tlsAdvice(tls, 'amqpTls')}`,
      error,
    );
  }
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
      `RabbitMQ at ${redactUrl(url)} refused the virtual host "${vhostOf(url)}" (it does not exist, the user may not use it, or its connection limit is reached): check the path of the AMQP URL, create the vhost and grant the user access, or raise its max-connections`,
      error,
    );
  }
  return undefined;
}

/**
 * A TLS failure of a Postgres connection: Node's (see `tlsFailure`), or pg's own when the
 * server does not offer TLS at all (`ssl = off`) though the client asks for it.
 */
function databaseTlsFailure(error: unknown): TlsFailure | undefined {
  const message = error instanceof Error ? error.message : '';
  if (message === 'The server does not support SSL connections') {
    return { code: 'SSL_NOT_SUPPORTED', reason: message, refusedBy: 'server' };
  }
  return tlsFailure(error);
}

/** The virtual host an AMQP URL names: `/` when its path is empty. */
export function vhostOf(url: string): string {
  try {
    const path = new URL(url).pathname;
    return path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1));
  } catch {
    return '?';
  }
}
