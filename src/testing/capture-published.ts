import type { ConsumeMessage } from 'amqplib';
import { amqpTlsFor } from '../amqp/amqp-tls.js';
import { type AmqpUrls, amqpUrlList } from '../amqp/amqp-urls.js';
import { closeConnection } from '../amqp/close-within.js';
import { connectAmqpFirst } from '../amqp/connect-amqp.js';
import { exchangeExists } from '../amqp/exchange-exists.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { StateError } from '../errors/state-error.js';
import { optionsObject } from '../options/options-object.js';
import type { TlsOptions } from '../options/tls-options.js';
import { isJsonMediaType } from '../protocol/json-media-type.js';
import { mediaType } from '../protocol/media-type.js';
import { durationMs } from '../util/duration-option.js';
import { pollUntil } from './poll-until.js';

/** One message as the broker routed it to the capture. */
export interface CapturedMessage {
  readonly exchange: string;
  readonly routingKey: string;
  readonly messageId: string | undefined;
  readonly correlationId: string | undefined;
  /** The AMQP `timestamp` property in milliseconds (whole seconds on the wire), as `ctx.timestamp`. */
  readonly timestamp: number | undefined;
  readonly contentType: string | undefined;
  readonly headers: Readonly<Record<string, unknown>>;
  /** Parsed JSON for JSON content types (and none), else the raw bytes. */
  readonly payload: unknown;
  readonly content: Buffer;
}

/** What `capturePublished` returns: the messages so far, and a way to wait for more. */
export interface Capture {
  /** Everything captured so far, in arrival order. */
  readonly messages: readonly CapturedMessage[];
  /**
   * Resolves with the first `count` messages once that many arrived. After `close()`, rejects
   * with a `StateError` unless that many arrived before it.
   */
  waitFor(count: number, options?: { timeoutMs?: number | undefined }): Promise<CapturedMessage[]>;
  /** Stops capturing; the temporary queue goes with the connection. */
  close(): Promise<void>;
}

/** The connection settings of a capture, beside its URL. */
export interface CaptureOptions {
  /** TLS settings for `amqps://` URLs, as a relay's or consumer host's `amqpTls`. */
  readonly amqpTls?: TlsOptions | undefined;
}

/**
 * Captures what is published to `exchange` with a routing key matching `routingKey` (a binding
 * pattern: `#` takes everything on a topic exchange), through a temporary exclusive queue that
 * the broker deletes when the capture closes. Only messages published after it resolves are
 * captured. The exchange must exist.
 *
 * @example
 * const capture = await capturePublished(amqpUrl, 'orders', 'order.*');
 * try {
 *   await placeOrder();
 *   await flushOutbox(pool);
 *   const [message] = await capture.waitFor(1);
 *   assert.deepEqual(message.payload, { orderId: 'o-1' });
 * } finally {
 *   await capture.close();
 * }
 */
export async function capturePublished(
  amqpUrl: AmqpUrls,
  exchange: string,
  routingKey = '#',
  captureOptions?: CaptureOptions,
): Promise<Capture> {
  // amqplib would say "Missing value for mandatory field" of a frame, naming none of these.
  const urls = amqpUrlList(amqpUrl);
  const options = optionsObject('options', captureOptions, ['amqpTls'], 'capturePublished');
  const tls = amqpTlsFor(urls, options.amqpTls);
  if (typeof exchange !== 'string' || exchange === '') {
    throw new ConfigurationError('exchange', 'must be the name of an exchange');
  }
  if (typeof routingKey !== 'string') {
    throw new ConfigurationError(
      'routingKey',
      'must be a string: a binding pattern such as order.*',
    );
  }
  const model = await connectAmqpFirst(urls, {
    connectionName: `outboxkit-testing-capture-${process.pid}`,
    tls,
  });
  const messages: CapturedMessage[] = [];
  let closed = false;
  try {
    const channel = await model.createChannel();
    channel.on('error', () => {});
    if (!(await exchangeExists(channel, exchange))) {
      throw new OutboxkitError(
        'capture-exchange-not-found',
        `Cannot capture from exchange ${JSON.stringify(exchange)}: it does not exist. Declare it first (a ConsumerHost declares its consumers' exchanges on start)`,
      );
    }
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, exchange, routingKey);
    await channel.consume(
      queue,
      (message) => {
        if (message) messages.push(captured(message));
      },
      { noAck: true },
    );
  } catch (error) {
    await closeConnection(model);
    throw error;
  }
  return {
    messages,
    async waitFor(count, waitOptions) {
      if (!Number.isSafeInteger(count) || count < 0) {
        throw new ConfigurationError('count', `must be a whole number of messages, got ${count}`);
      }
      const options = optionsObject('options', waitOptions, ['timeoutMs'], 'capture.waitFor');
      const timeoutMs = durationMs('timeoutMs', options.timeoutMs, 10_000);
      const what = `${count} message(s) published to ${JSON.stringify(exchange)} with ${JSON.stringify(routingKey)}`;
      const found = await pollUntil(
        what,
        timeoutMs,
        async () => {
          if (messages.length >= count) return messages.slice(0, count);
          // Closed (before the wait, or during it): nothing more can arrive.
          return closed ? null : undefined;
        },
        () => `${messages.length} captured`,
      );
      if (found === null) {
        throw new StateError(
          `capture.waitFor: the capture is closed, with ${messages.length} of ${what} captured; wait before closing it`,
          'closed',
        );
      }
      return found;
    },
    async close() {
      closed = true;
      await closeConnection(model);
    },
  };
}

function captured(message: ConsumeMessage): CapturedMessage {
  const type = message.properties.contentType as string | undefined;
  let payload: unknown = message.content;
  // As the consumer does (parse-delivery): JSON types parsed, any other type's bytes as they are.
  if (isJsonMediaType(mediaType(type ?? 'application/json'))) {
    try {
      payload = JSON.parse(message.content.toString('utf8'));
    } catch {
      // Not JSON after all: the bytes are there to look at.
    }
  }
  return {
    exchange: message.fields.exchange,
    routingKey: message.fields.routingKey,
    messageId: message.properties.messageId as string | undefined,
    correlationId: message.properties.correlationId as string | undefined,
    timestamp:
      typeof message.properties.timestamp === 'number'
        ? message.properties.timestamp * 1000
        : undefined,
    contentType: type,
    headers: message.properties.headers ?? {},
    payload,
    content: message.content,
  };
}
