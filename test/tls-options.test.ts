import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionOptions, PeerCertificate } from 'node:tls';
import pg from 'pg';
import { amqpTlsFor } from '../src/amqp/amqp-tls.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { tlsAdvice, tlsFailure } from '../src/errors/tls-failure.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { tlsConnectionOptions } from '../src/options/tls-options.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { databaseTlsConfig } from '../src/sql/database-tls.js';
import { silentLogger } from '../src/util/logger.js';

/** Not a real certificate: the options are checked for PEM text, not parsed. */
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
const KEY = '-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n';

function refusal(option: string, detail: RegExp) {
  return (error: unknown) => {
    assert.ok(error instanceof ConfigurationError, String(error));
    assert.equal(error.option, option);
    assert.match(error.message, detail);
    return true;
  };
}

describe('TLS options', () => {
  it('become tls.connect options, verifying the server by default', () => {
    assert.deepEqual(tlsConnectionOptions('amqpTls', { ca: PEM, cert: PEM, key: KEY }), {
      ca: PEM,
      cert: PEM,
      key: KEY,
      rejectUnauthorized: true,
    });
    assert.deepEqual(tlsConnectionOptions('amqpTls', { ca: [PEM, Buffer.from(PEM)] })?.ca, [
      PEM,
      Buffer.from(PEM),
    ]);
    assert.equal(tlsConnectionOptions('amqpTls', undefined), undefined);
  });

  it('refuse a path where PEM text belongs, naming the option', () => {
    assert.throws(
      () => tlsConnectionOptions('amqpTls', { ca: '/etc/ssl/ca.pem' }),
      refusal('amqpTls.ca', /must be PEM text.*not a path or name such as "\/etc\/ssl\/ca.pem"/),
    );
  });

  it('refuse a certificate without its key, an unknown key and a wrong type', () => {
    assert.throws(
      () => tlsConnectionOptions('databaseTls', { cert: PEM }),
      refusal('databaseTls.key', /is needed too/),
    );
    assert.throws(
      () => tlsConnectionOptions('amqpTls', { caFile: PEM }),
      refusal('amqpTls.caFile', /is not a TLS option; the options are ca, cert, key/),
    );
    assert.throws(
      () => tlsConnectionOptions('amqpTls', { rejectUnauthorized: 'no' }),
      refusal('amqpTls.rejectUnauthorized', /true or false/),
    );
    assert.throws(() => tlsConnectionOptions('amqpTls', 'on'), refusal('amqpTls', /an object/));
  });

  it('amqpTls is refused with an amqp:// URL, in a list too, naming it without its password', () => {
    assert.ok(amqpTlsFor(['amqps://a', 'amqps://b'], { ca: PEM }));
    assert.equal(amqpTlsFor(['amqp://a'], undefined), undefined);
    assert.throws(
      () => amqpTlsFor(['amqps://u:secret@a', 'amqp://u:secret@b:5672'], { ca: PEM }),
      refusal('amqpTls', /applies to amqps:\/\/ URLs, and amqp:\/\/u:\*\*\*@b:5672 is not one/),
    );
    assert.throws(
      () =>
        new OutboxRelay({
          databaseUrl: 'postgres://localhost/x',
          amqpUrl: 'amqp://localhost',
          amqpTls: { ca: PEM },
          logger: silentLogger,
        }),
      refusal('amqpTls', /applies to amqps:\/\//),
    );
    assert.throws(
      () =>
        resolveModuleOptions(
          { databaseUrl: 'postgres://localhost/x', amqpUrl: 'amqp://h', amqpTls: { ca: PEM } },
          silentLogger,
        ),
      refusal('amqpTls', /applies to amqps:\/\//),
    );
  });

  it("databaseTls is refused beside the URL's own TLS parameters, and without databaseUrl", () => {
    assert.deepEqual(databaseTlsConfig('postgres://h/db', undefined), {});
    assert.equal((databaseTlsConfig('postgres://h/db', { ca: PEM }).ssl as { ca: string }).ca, PEM);
    assert.throws(
      () => databaseTlsConfig('postgres://h/db?sslmode=verify-full', { ca: PEM }),
      refusal('databaseTls', /cannot be combined with sslmode in databaseUrl/),
    );
    const pool = new pg.Pool();
    try {
      assert.throws(
        () =>
          new OutboxRelay({
            pool,
            amqpUrl: 'amqps://localhost',
            databaseTls: { ca: PEM },
            logger: silentLogger,
          }),
        refusal('databaseTls', /set `ssl` on your own `pool`/),
      );
      assert.throws(
        () =>
          resolveModuleOptions(
            { pool, amqpUrl: 'amqps://h', databaseTls: { ca: PEM } },
            silentLogger,
          ),
        refusal('databaseTls', /pools made from `databaseUrl`/),
      );
    } finally {
      void pool.end();
    }
  });

  it('a servername of databaseTls is checked against the certificate, in place of the host pg sets', () => {
    const { ssl } = databaseTlsConfig('postgres://10.0.0.1/db', {
      ca: PEM,
      servername: 'db.example',
    });
    const check = (ssl as Pick<ConnectionOptions, 'checkServerIdentity'>).checkServerIdentity!;
    const certificate = (names: string) =>
      ({ subject: {}, subjectaltname: names }) as unknown as PeerCertificate;
    assert.equal(check('10.0.0.1', certificate('DNS:db.example')), undefined);
    assert.ok(check('10.0.0.1', certificate('DNS:other.example')) instanceof Error);
  });
});

describe('tlsFailure', () => {
  it('tells certificate verdicts, server alerts and bad keys from failures that may pass', () => {
    const coded = (code: string, message = code) => Object.assign(new Error(message), { code });
    assert.equal(tlsFailure(coded('SELF_SIGNED_CERT_IN_CHAIN'))?.refusedBy, 'client');
    assert.equal(tlsFailure(coded('ERR_TLS_CERT_ALTNAME_INVALID'))?.refusedBy, 'client');
    const alert = Object.assign(coded('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'C0:error:...'), {
      reason: 'tlsv1 alert unknown ca',
    });
    assert.deepEqual(tlsFailure(new Error('wrapped', { cause: alert })), {
      code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
      reason: 'tlsv1 alert unknown ca',
      refusedBy: 'server',
    });
    assert.equal(tlsFailure(coded('ERR_OSSL_BAD_DECRYPT'))?.refusedBy, 'setup');
    assert.equal(tlsFailure(coded('ECONNREFUSED')), undefined);
    assert.equal(tlsFailure(coded('ETIMEDOUT')), undefined);
    assert.equal(tlsFailure(undefined), undefined);
  });

  it('advises by the verdict: an expired certificate or another host is not a CA to check', () => {
    // Every refused certificate got "check amqpTls.ca" (found by a probe).
    const advice = (code: string) =>
      tlsAdvice({ code, reason: code, refusedBy: 'client' }, 'amqpTls');
    assert.match(advice('CERT_HAS_EXPIRED'), /validity dates: renew it/);
    assert.doesNotMatch(advice('CERT_HAS_EXPIRED'), /amqpTls\.ca/);
    assert.match(advice('ERR_TLS_CERT_ALTNAME_INVALID'), /another host.*amqpTls\.servername/);
    assert.match(advice('SELF_SIGNED_CERT_IN_CHAIN'), /amqpTls\.ca/);
  });
});
