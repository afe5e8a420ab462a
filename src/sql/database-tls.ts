import { type ConnectionOptions, checkServerIdentity } from 'node:tls';
import type pg from 'pg';
import { ConfigurationError } from '../errors/configuration-error.js';
import { tlsConnectionOptions } from '../options/tls-options.js';

/** Parameters of a Postgres URL that set TLS up: pg lets them override the pool's `ssl`. */
const URL_TLS_PARAMETERS = ['ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey'] as const;

/**
 * The `ssl` of a pg pool made from `databaseUrl` with `databaseTls`: TLS on, the server's
 * certificate verified against `ca` and its host name, as libpq's `sslmode=verify-full`. Empty
 * when `databaseTls` is not given: TLS parameters of the URL (`sslmode`, `sslrootcert`, ...)
 * then apply as pg reads them. Both at once are refused: pg would let the URL's win and drop
 * the CA given here without a word.
 */
export function databaseTlsConfig(
  databaseUrl: string | undefined,
  value: unknown,
): Pick<pg.PoolConfig, 'ssl'> {
  const tls = tlsConnectionOptions('databaseTls', value);
  if (tls === undefined) return {};
  const inUrl = databaseUrl === undefined ? [] : urlTlsParameters(databaseUrl);
  if (inUrl.length > 0) {
    throw new ConfigurationError(
      'databaseTls',
      `cannot be combined with ${inUrl.join(', ')} in databaseUrl (pg would let the URL's win): give TLS settings in one place`,
    );
  }
  return { ssl: withServername(tls) };
}

function urlTlsParameters(databaseUrl: string): string[] {
  let parameters: URLSearchParams;
  try {
    parameters = new URL(databaseUrl).searchParams;
  } catch {
    return [];
  }
  return URL_TLS_PARAMETERS.filter((name) => parameters.has(name));
}

/**
 * pg sets the TLS server name to the URL's host after our options, so a `servername` would be
 * lost: the certificate is checked against it here instead.
 */
function withServername(tls: ConnectionOptions): ConnectionOptions {
  const { servername } = tls;
  if (servername === undefined) return tls;
  return { ...tls, checkServerIdentity: (_host, cert) => checkServerIdentity(servername, cert) };
}
