import type { ConnectionOptions } from 'node:tls';
import { ConfigurationError } from '../errors/configuration-error.js';
import { booleanOption } from './boolean-option.js';
import { optionNames } from './option-names.js';

/** PEM text: the contents of a certificate or key file, not its path. */
export type Pem = string | Buffer;

/**
 * TLS settings of outboxkit's connections to RabbitMQ (`amqpTls`) or Postgres (`databaseTls`).
 * The server's certificate is verified, against `ca` when given and Node's bundled CAs
 * otherwise, unless `rejectUnauthorized` is `false`, or a Postgres URL asks pg not to
 * (`sslmode=no-verify`, or `sslmode=require` with `uselibpqcompat=true`): the URL's choice is
 * pg's to read, and those encrypt without checking who answers.
 */
export interface TlsOptions {
  /** CA certificate(s), PEM, the server's certificate must chain to. Default Node's bundled CAs. */
  readonly ca?: Pem | readonly Pem[] | undefined;
  /** Client certificate, PEM, for a server that asks for one; needs `key`. */
  readonly cert?: Pem | undefined;
  /** Private key of `cert`, PEM. */
  readonly key?: Pem | undefined;
  /** Passphrase of an encrypted `key`. */
  readonly passphrase?: string | undefined;
  /** Name the server's certificate must bear (and the SNI name), when not the URL's host. */
  readonly servername?: string | undefined;
  /** `false` encrypts without checking the server's certificate: for tests only. Default `true`. */
  readonly rejectUnauthorized?: boolean | undefined;
}

/** Every option of `TlsOptions`, for the options table in docs/options.md. */
export const TLS_OPTION_NAMES = optionNames<TlsOptions>()([
  'ca',
  'cert',
  'key',
  'passphrase',
  'servername',
  'rejectUnauthorized',
]);

/**
 * Checks TLS settings given as `option` (`amqpTls`, `databaseTls`) and returns them as Node's
 * `tls.connect` options, or undefined when not given. Refuses, naming the option, what would
 * otherwise fail later and further from its cause: an unknown key (a typo would silently drop
 * a setting), a file path where PEM text belongs, a certificate without its key.
 */
export function tlsConnectionOptions(
  option: string,
  value: unknown,
): ConnectionOptions | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigurationError(
      option,
      'must be an object such as { ca, cert, key } of PEM texts, or left out',
    );
  }
  const given = value as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(TLS_OPTION_NAMES as readonly string[]).includes(key)) {
      throw new ConfigurationError(
        `${option}.${key}`,
        `is not a TLS option; the options are ${TLS_OPTION_NAMES.join(', ')}`,
      );
    }
  }
  const ca = given.ca === undefined ? undefined : caOf(`${option}.ca`, given.ca);
  const cert = given.cert === undefined ? undefined : pem(`${option}.cert`, given.cert);
  const key = given.key === undefined ? undefined : pem(`${option}.key`, given.key);
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigurationError(
      `${option}.${cert === undefined ? 'cert' : 'key'}`,
      'is needed too: a client certificate goes with its private key',
    );
  }
  for (const name of ['passphrase', 'servername'] as const) {
    const text = given[name];
    if (text !== undefined && (typeof text !== 'string' || text === '')) {
      throw new ConfigurationError(`${option}.${name}`, 'must be a non-empty string');
    }
  }
  return {
    ...(ca !== undefined && { ca }),
    ...(cert !== undefined && { cert, key }),
    ...(given.passphrase !== undefined && { passphrase: given.passphrase as string }),
    ...(given.servername !== undefined && { servername: given.servername as string }),
    rejectUnauthorized: booleanOption(
      `${option}.rejectUnauthorized`,
      given.rejectUnauthorized,
      true,
    ),
  };
}

function caOf(option: string, value: unknown): Pem | Pem[] {
  return Array.isArray(value) ? value.map((one) => pem(option, one)) : pem(option, value);
}

function pem(option: string, value: unknown): Pem {
  if (typeof value !== 'string' && !Buffer.isBuffer(value)) {
    throw new ConfigurationError(option, 'must be PEM text (a string or a Buffer)');
  }
  if (!value.includes('-----BEGIN ')) {
    throw new ConfigurationError(
      option,
      `must be PEM text, the contents of the file (readFileSync(path)), not ${describe(value)}`,
    );
  }
  return value;
}

/** What was given instead of PEM, short and without echoing a secret. */
function describe(value: Pem): string {
  if (typeof value === 'string' && value.length < 300 && !/\s/.test(value)) {
    return `a path or name such as ${JSON.stringify(value)}`;
  }
  return `${value.length} ${typeof value === 'string' ? 'characters' : 'bytes'} without a "-----BEGIN" line`;
}
