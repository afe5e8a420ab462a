import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { run } from '../faults/exec.js';

/** PEM files made for one test run: a CA, a server and a client certificate, and a stranger CA. */
export interface TestCertificates {
  readonly dir: string;
  /** Paths of the files, for servers' configurations and the CLI's flags. */
  readonly files: {
    readonly ca: string;
    readonly serverCert: string;
    readonly serverKey: string;
    readonly clientCert: string;
    readonly clientKey: string;
    /** A CA that signed none of these: the wrong CA. */
    readonly otherCa: string;
  };
  /** The contents of the files, for the library's options. */
  readonly ca: string;
  readonly clientCert: string;
  readonly clientKey: string;
  readonly otherCa: string;
}

/** EC keys: made in milliseconds, where RSA keys of a useful size take a while. */
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/**
 * Makes, with openssl, a CA and certificates it signs into `dir`: the server's for `localhost`
 * and 127.0.0.1 (both as subject alternative names), and a client's whose common name is
 * `clientName` (Postgres's `cert` authentication takes the user name from it).
 */
export async function makeCertificates(dir: string, clientName: string): Promise<TestCertificates> {
  const file = (name: string) => path.join(dir, name);
  const ca = async (name: string, subject: string) =>
    run('openssl', [
      'req',
      '-x509',
      ...NEW_KEY,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.crt`),
      '-days',
      '2',
      '-subj',
      subject,
    ]);
  const signed = async (name: string, subject: string, extensions: string) => {
    await run('openssl', [
      'req',
      ...NEW_KEY,
      '-keyout',
      file(`${name}.key`),
      '-out',
      file(`${name}.csr`),
      '-subj',
      subject,
    ]);
    writeFileSync(file(`${name}.ext`), extensions);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      file(`${name}.csr`),
      '-CA',
      file('ca.crt'),
      '-CAkey',
      file('ca.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      file(`${name}.ext`),
      '-out',
      file(`${name}.crt`),
    ]);
  };
  await Promise.all([
    ca('ca', '/CN=outboxkit test CA'),
    ca('other-ca', '/CN=outboxkit stranger CA'),
  ]);
  // One at a time: both would write the CA's serial file.
  await signed(
    'server',
    '/CN=localhost',
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  await signed('client', `/CN=${clientName}`, 'extendedKeyUsage=clientAuth\n');
  const files = {
    ca: file('ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
    otherCa: file('other-ca.crt'),
  };
  const read = (p: string) => readFileSync(p, 'utf8');
  return {
    dir,
    files,
    ca: read(files.ca),
    clientCert: read(files.clientCert),
    clientKey: read(files.clientKey),
    otherCa: read(files.otherCa),
  };
}
