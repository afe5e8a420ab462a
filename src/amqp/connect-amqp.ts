import type { ConnectionOptions } from 'node:tls';
import type { ChannelModel } from 'amqplib';
import * as amqp from 'amqplib';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { tlsFailure } from '../errors/tls-failure.js';
import { brokerMisconfiguration } from '../start/misconfiguration.js';
import { errorMessage, type OutboxLogger, redactUrl, silentLogger } from '../util/logger.js';

/** Heartbeat asked for unless the URL names one: a dead link is noticed within about twice it. */
export const DEFAULT_HEARTBEAT_SECONDS = 10;
/** How long the TCP connect and the AMQP handshake may take together. */
export const CONNECT_TIMEOUT_MS = 10_000;

export interface ConnectAmqpOptions {
  /** Shown in the broker's management UI, so an operator can tell outboxkit's connections apart. */
  readonly connectionName: string;
  /** Used unless the URL has a `heartbeat` parameter. Default 10 s. */
  readonly heartbeatSeconds?: number;
  /** Told of errors on the connection once it is up. Default: they are swallowed. */
  readonly logger?: OutboxLogger;
  /** For `amqps://` URLs: checked `amqpTls` (see `amqpTlsFor`). Default Node's TLS defaults. */
  readonly tls?: ConnectionOptions | undefined;
  /**
   * Aborts a connect still under way by destroying its socket: without it, a broker that took
   * the TCP connection and answers nothing holds the socket, and the process, until the connect
   * timeout (10 s) after its owner has stopped. Once connected it has no effect: a made
   * connection is closed politely by its owner, not destroyed.
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Opens one AMQP connection the way every outboxkit connection is opened: with a heartbeat (so
 * a half-open link is noticed), a connect timeout (so a broker that accepts TCP and answers
 * nothing cannot hold a connect forever), Nagle off (it would hold small frames back for tens of
 * milliseconds), a connection name, and an 'error' listener (without one,
 * a connection error would crash the process). A failure is an `OutboxkitError`
 * (`amqp-connect-failed`) naming the URL without its password and, for a TLS failure, saying
 * so with OpenSSL's code; its `cause` is amqplib's error.
 */
export async function connectAmqp(url: string, options: ConnectAmqpOptions): Promise<ChannelModel> {
  const { signal } = options;
  // The socket keeps the signal it is made with for its life: it gets one of its own, aborted
  // by the caller's only while the connect is under way.
  const attempt = signal && new AbortController();
  const abort = () => attempt?.abort(signal?.reason);
  if (signal?.aborted) abort();
  signal?.addEventListener('abort', abort, { once: true });
  let model: ChannelModel;
  try {
    model = await amqp.connect(withHeartbeat(url, options.heartbeatSeconds), {
      noDelay: true,
      timeout: CONNECT_TIMEOUT_MS,
      clientProperties: { connection_name: options.connectionName },
      ...options.tls,
      // amqplib hands its socket options to net.connect or tls.connect, which take a signal.
      ...(attempt && { signal: attempt.signal }),
    });
  } catch (error) {
    throw new OutboxkitError(
      'amqp-connect-failed',
      `RabbitMQ at ${redactUrl(url)}: ${failureOf(error)}`,
      { cause: error },
    );
  } finally {
    signal?.removeEventListener('abort', abort);
  }
  const logger = options.logger ?? silentLogger;
  model.on('error', (error: Error) => {
    logger.warn('RabbitMQ connection error', {
      connection: options.connectionName,
      error: errorMessage(error),
    });
  });
  return model;
}

/**
 * Connects to the first of `urls` (the nodes of one cluster) that answers, trying them in order.
 * Rejects with the last failure, its message naming every URL tried.
 */
export async function connectAmqpFirst(
  urls: readonly string[],
  options: ConnectAmqpOptions,
): Promise<ChannelModel> {
  let last: unknown;
  let lastUrl = '';
  for (const url of urls) {
    try {
      return await connectAmqp(url, options);
    } catch (error) {
      last = error;
      lastUrl = url;
    }
  }
  const cause = (last as { cause?: unknown } | undefined)?.cause ?? last;
  // A refused login, vhost or certificate in the words the relay and consumers use, naming the fix.
  const refused = brokerMisconfiguration(cause, lastUrl);
  throw new OutboxkitError(
    'amqp-connect-failed',
    refused && urls.length === 1
      ? refused.message
      : `RabbitMQ at ${urls.map(redactUrl).join(', ')}: ${refused ? refused.message : failureOf(cause)}`,
    { cause },
  );
}

function withHeartbeat(url: string, heartbeatSeconds = DEFAULT_HEARTBEAT_SECONDS): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // amqplib reports a malformed URL better than a rewrite could.
    return url;
  }
  if (!parsed.searchParams.has('heartbeat')) {
    parsed.searchParams.set('heartbeat', String(heartbeatSeconds));
  }
  return parsed.toString();
}

/** A connect failure in words; a TLS one says so, with its code, since its message may not. */
function failureOf(error: unknown): string {
  const tls = tlsFailure(error);
  return tls ? `TLS failed: ${tls.reason} (${tls.code})` : errorMessage(error);
}
