/**
 * OpenSSL's verdicts on a server's certificate, as Node reports them in `error.code`: the
 * certificate does not chain to a trusted CA, has expired, or names another host.
 */
const CERTIFICATE_REFUSED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** A TLS handshake or set-up that failed for a reason no retry mends. */
export interface TlsFailure {
  /** Node's or OpenSSL's code, such as `SELF_SIGNED_CERT_IN_CHAIN`. */
  readonly code: string;
  /** Its message, such as "self-signed certificate in certificate chain". */
  readonly reason: string;
  /** Which side refused: the server's certificate, or the server (our certificate, or no TLS). */
  readonly refusedBy: 'client' | 'server' | 'setup';
}

/**
 * The TLS failure in `error` or its causes, or undefined when it is something else (a refused
 * or lost connection, a timeout), which may pass. Refused are: the server's certificate (wrong
 * CA, expired, another host's), our client certificate (the server's alert: missing, unknown
 * CA), a handshake that is not TLS (a plain port), and our own key or certificate (unreadable,
 * wrong passphrase, not matching).
 */
export function tlsFailure(error: unknown): TlsFailure | undefined {
  for (let e = error, depth = 0; e !== null && typeof e === 'object' && depth < 5; depth += 1) {
    const { code, reason: opensslReason } = e as { code?: unknown; reason?: unknown };
    // OpenSSL's errors carry a short `reason` ("tlsv13 alert certificate required") beside a
    // message of file names and line numbers.
    const reason =
      typeof opensslReason === 'string'
        ? opensslReason
        : e instanceof Error
          ? e.message
          : String(e);
    if (typeof code === 'string') {
      if (CERTIFICATE_REFUSED.has(code)) return { code, reason, refusedBy: 'client' };
      if (code.startsWith('ERR_SSL_')) return { code, reason, refusedBy: 'server' };
      if (code.startsWith('ERR_OSSL_')) return { code, reason, refusedBy: 'setup' };
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** What to check for a TLS failure, in a sentence; `option` is `amqpTls` or `databaseTls`. */
export function tlsAdvice(failure: TlsFailure, option: string): string {
  switch (failure.refusedBy) {
    case 'client':
      // The advice that fits the verdict: a date or a name is not mended by another CA.
      if (failure.code === 'CERT_HAS_EXPIRED' || failure.code === 'CERT_NOT_YET_VALID') {
        return "the server's certificate is outside its validity dates: renew it on the server (or check this machine's clock)";
      }
      if (failure.code === 'ERR_TLS_CERT_ALTNAME_INVALID' || failure.code === 'HOSTNAME_MISMATCH') {
        return `the server's certificate names another host than the URL's: connect by a name the certificate lists, or give that name as \`${option}.servername\``;
      }
      return `the server's certificate was refused: check \`${option}.ca\` (the CA that signed the server's certificate) and that the certificate names the host of the URL (or \`${option}.servername\`)`;
    case 'server':
      return `the TLS handshake failed: check that the port serves TLS and that the server accepts the client certificate (\`${option}.cert\`, \`${option}.key\`)`;
    case 'setup':
      return `the client certificate or key could not be used: check \`${option}.cert\`, \`${option}.key\` and \`${option}.passphrase\``;
  }
}
