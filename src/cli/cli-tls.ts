import { readFileSync } from 'node:fs';
import type { TlsOptions } from '../options/tls-options.js';
import { errorMessage } from '../util/logger.js';
import type { CliEnv } from './cli-command.js';
import { UsageError } from './usage-error.js';

/** How every command that talks to Postgres declares its TLS flags: file paths. */
export const DATABASE_TLS_OPTIONS = {
  'database-ca': { type: 'string' },
  'database-cert': { type: 'string' },
  'database-key': { type: 'string' },
} as const;

/** How every command that talks to RabbitMQ declares its TLS flags: file paths. */
export const AMQP_TLS_OPTIONS = {
  'amqp-ca': { type: 'string' },
  'amqp-cert': { type: 'string' },
  'amqp-key': { type: 'string' },
} as const;

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
      `--${side}-cert and --${side}-key go together: a client certificate needs its private key`,
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
