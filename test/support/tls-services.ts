import { chmodSync, chownSync, copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../faults/exec.js';
import { ownedDir } from '../faults/fault-processes.js';
import { PrivatePostgres } from '../faults/private-postgres.js';
import { PrivateRabbitMq, userIds } from '../faults/private-rabbitmq.js';
import { makeCertificates, type TestCertificates } from './tls-certificates.js';

/**
 * A private RabbitMQ node with a TLS listener that demands a client certificate, and a private
 * Postgres that takes connections over TLS only, with a client certificate, both with
 * certificates made for the run. Registered with the fault suite's process registry, so they
 * are stopped however the test process ends.
 */
export class TlsServices {
  readonly certificates: TestCertificates;
  readonly rabbitmq: PrivateRabbitMq;
  readonly postgres: PrivatePostgres;
  readonly tlsPort: number;

  private constructor(
    certificates: TestCertificates,
    rabbitmq: PrivateRabbitMq,
    postgres: PrivatePostgres,
    tlsPort: number,
  ) {
    this.certificates = certificates;
    this.rabbitmq = rabbitmq;
    this.postgres = postgres;
    this.tlsPort = tlsPort;
  }

  static async start(): Promise<TlsServices> {
    const certificates = await makeCertificates(ownedDir('tls'), 'postgres');
    const files = certificates.files;
    // The rabbitmq user reads the server's key where it is: openssl made it 0600, for root.
    chownSync(files.serverKey, userIds('rabbitmq').uid, userIds('rabbitmq').gid);
    const tlsPort = await freePort();
    const [rabbitmq, postgres] = await Promise.all([
      PrivateRabbitMq.start({
        config: {
          'listeners.ssl.1': `127.0.0.1:${tlsPort}`,
          'ssl_options.cacertfile': files.ca,
          'ssl_options.certfile': files.serverCert,
          'ssl_options.keyfile': files.serverKey,
          'ssl_options.verify': 'verify_peer',
          'ssl_options.fail_if_no_peer_cert': 'true',
        },
      }),
      PrivatePostgres.start(),
    ]);
    try {
      await enableTls(postgres, certificates);
    } catch (error) {
      await Promise.all([rabbitmq.destroy(), postgres.destroy()]);
      throw error;
    }
    return new TlsServices(certificates, rabbitmq, postgres, tlsPort);
  }

  /** The TLS listener, by IP address: the certificate names 127.0.0.1 too. */
  get amqpsUrl(): string {
    return `amqps://guest:guest@127.0.0.1:${this.tlsPort}`;
  }

  /** The plain listener of the same node. */
  get amqpUrl(): string {
    return this.rabbitmq.url;
  }

  /** Postgres by host name, which its certificate names; only TLS connections get in. */
  databaseUrl(applicationName?: string): string {
    const url = new URL(this.postgres.url(applicationName));
    url.hostname = 'localhost';
    return url.toString();
  }

  async destroy(): Promise<void> {
    await Promise.all([this.rabbitmq.destroy(), this.postgres.destroy()]);
  }
}

/**
 * Turns TLS on in the cluster and lets TCP connections in over TLS with a client certificate
 * only (`hostssl ... cert`), refusing any other (`hostnossl ... reject`): a connection that
 * works used TLS. Postgres wants its key owned by it and private.
 */
async function enableTls(postgres: PrivatePostgres, certificates: TestCertificates): Promise<void> {
  const { uid, gid } = userIds('postgres');
  const data = postgres.dataDir;
  for (const [from, to] of [
    [certificates.files.serverCert, 'server.crt'],
    [certificates.files.serverKey, 'server.key'],
    [certificates.files.ca, 'ca.crt'],
  ] as const) {
    copyFileSync(from, path.join(data, to));
    chownSync(path.join(data, to), uid, gid);
  }
  chmodSync(path.join(data, 'server.key'), 0o600);
  writeFileSync(
    path.join(data, 'postgresql.auto.conf'),
    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'ca.crt'\n",
  );
  writeFileSync(
    path.join(data, 'pg_hba.conf'),
    [
      'local all all trust',
      'hostssl all all 127.0.0.1/32 cert',
      'hostssl all all ::1/128 cert',
      'hostnossl all all 0.0.0.0/0 reject',
      'hostnossl all all ::/0 reject',
      '',
    ].join('\n'),
  );
  await postgres.restart('fast');
}
