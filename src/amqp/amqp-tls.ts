import type { ConnectionOptions } from 'node:tls';
import { ConfigurationError } from '../errors/configuration-error.js';
import { tlsConnectionOptions } from '../options/tls-options.js';
import { redactUrl } from '../util/logger.js';

/**
 * Checks `amqpTls` against the broker URLs and returns it as `tls.connect` options for every
 * one of them, or undefined when not given. TLS settings with an `amqp://` URL are refused
 * rather than ignored: the operator who gave a CA expects an encrypted, verified link, and a
 * plain one to that node (a failover node mistyped, say) would be silent.
 */
export function amqpTlsFor(urls: readonly string[], value: unknown): ConnectionOptions | undefined {
  const tls = tlsConnectionOptions('amqpTls', value);
  if (tls === undefined) return undefined;
  const plain = urls.find((url) => !url.startsWith('amqps:'));
  if (plain !== undefined) {
    throw new ConfigurationError(
      'amqpTls',
      `applies to amqps:// URLs, and ${redactUrl(plain)} is not one: write amqps:// (RabbitMQ's TLS listener, port 5671 by default), or give no TLS settings`,
    );
  }
  return tls;
}
