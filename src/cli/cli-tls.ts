import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import type { TlsOptions } from '../options/tls-options.js';
import { databaseTlsConfig } from '../sql/database-tls.js';
import { errorMessage } from '../util/logger.js';
import { usageErrorFor } from './cli-args.js';
import type { CliEnv } from './cli-command.js';
import { UsageError } from './usage-error.js';

/**
 * `databaseTls` or `amqpTls` from the file flags of `side`, each else its variable
 * (`DATABASE_CA`, ...), with the passphrase from `<SIDE>_KEY_PASSPHRASE` only (a flag would
 * show it in `ps`). Undefined when none is given. A file that cannot be read, or is not PEM,
 * is a usage error naming the flag (or variable) and the path.
 */
export function tlsFilesOf(
  side: 'database' | 'amqp',
  flags: Readonly<Record<string, unknown>>,
  env: CliEnv,
): TlsOptions | undefined {
  const variable = side.toUpperCase();
  const read = (part: 'ca' | 'cert' | 'key'): string | undefined => {
    const flag = flags[`${side}-${part}`];
    const source =
      typeof flag === 'string' ? `--${side}-${part}` : `${variable}_${part.toUpperCase()}`;
    const path = typeof flag === 'string' ? flag : env[`${variable}_${part.toUpperCase()}`];
    if (path === undefined || path === '') return undefined;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new UsageError(`${source} ${path}: cannot read it (${errorMessage(error)})`);
    }
    if (!text.includes('-----BEGIN ')) {
      throw new UsageError(`${source} ${path}: not a PEM file (no "-----BEGIN" line)`);
    }
    return text;
  };
  const ca = read('ca');
  const cert = read('cert');
  const key = read('key');
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError(
      `--${side}-cert and --${side}-key (or ${variable}_CERT and ${variable}_KEY) go together: a client certificate needs its private key`,
    );
  }
  const passphrase = env[`${variable}_KEY_PASSPHRASE`];
  if (ca === undefined && cert === undefined) return undefined;
  return {
    ...(ca !== undefined && { ca }),
    ...(cert !== undefined && key !== undefined && { cert, key }),
    ...(passphrase !== undefined && passphrase !== '' && { passphrase }),
  };
}

/** The paragraph of `--help` on Postgres TLS, for every command. */
export const DATABASE_TLS_HELP = `
Postgres over TLS: --database-ca <file> (the CA its certificate must chain to), and for a client
certificate --database-cert <file> and --database-key <file>, PEM files (default: $DATABASE_CA,
$DATABASE_CERT, $DATABASE_KEY; the key's passphrase in $DATABASE_KEY_PASSPHRASE). The server's
certificate is checked against the host of the URL.
`;

/** The paragraph of `--help` on RabbitMQ TLS, for the commands that connect to it. */
export const AMQP_TLS_HELP = `
RabbitMQ over TLS: amqps:// URLs, with --amqp-ca <file>, --amqp-cert <file> and --amqp-key <file>
as for Postgres (default: $AMQP_CA, $AMQP_CERT, $AMQP_KEY, $AMQP_KEY_PASSPHRASE); they apply to
every --amqp-url, and are refused with an amqp:// one.
`;

/** The flags that make `databaseTls` and `amqpTls`, for messages about those options. */
export const TLS_FLAGS_OF_OPTION: Readonly<Record<string, string>> = {
  databaseTls: '--database-ca/--database-cert/--database-key',
  amqpTls: '--amqp-ca/--amqp-cert/--amqp-key',
};

/** `databaseTlsConfig` for a command's pool, its refusals as usage errors naming the flags. */
export function cliDatabaseTlsConfig(
  url: string,
  tls: TlsOptions | undefined,
): Pick<pg.PoolConfig, 'ssl'> {
  try {
    return databaseTlsConfig(url, tls);
  } catch (error) {
    throw usageErrorFor(error, TLS_FLAGS_OF_OPTION);
  }
}

/** Refuses `amqpTls` with an `amqp://` URL before anything connects, naming the flags. */
export function checkCliAmqpTls(urls: readonly string[], tls: TlsOptions | undefined): void {
  try {
    amqpTlsFor(urls, tls);
  } catch (error) {
    throw usageErrorFor(error, TLS_FLAGS_OF_OPTION);
  }
}
