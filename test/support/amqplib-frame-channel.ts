import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ConfirmChannel, Options } from 'amqplib';

// amqplib's own confirm channel, fed frames by the test: its delivery-tag accounting (`multiple`,
// gaps, nacks), its return assembly and its close handling are the real ones. Its package
// exports only the public API, hence the paths.
const require = createRequire(import.meta.url);
const lib = join(dirname(require.resolve('amqplib')), 'lib');
const { ConfirmChannel: AmqplibConfirmChannel } = require(join(lib, 'channel_model.js')) as {
  ConfirmChannel: new (connection: unknown) => AmqplibChannel;
};
const defs = require(join(lib, 'defs.js')) as {
  encodeProperties(id: number, channel: number, size: number, fields: object): Buffer;
  decode(id: number, buffer: Buffer): Record<string, unknown>;
  BasicProperties: number;
  BasicReturn: number;
  BasicAck: number;
  BasicNack: number;
  ChannelClose: number;
  ChannelCloseOk: number;
};

interface Frame {
  readonly id: number | undefined;
  readonly fields?: Record<string, unknown>;
  readonly size?: number;
  readonly content?: Buffer;
}

interface AmqplibChannel {
  accept(frame: Frame): void;
  toClosed(stack?: string): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

/** A publish as the broker would have read it: properties through amqplib's codec. */
export interface WirePublish {
  readonly exchange: string;
  readonly routingKey: string;
  readonly properties: Options.Publish & { headers?: Record<string, unknown> };
}

/** What amqplib asks of its connection, recorded. */
class RecordingConnection {
  readonly published: WirePublish[] = [];
  sendMessage(
    _channel: number,
    _method: number,
    fields: { exchange: string; routingKey: string },
    _propertiesId: number,
    properties: object,
    content: Buffer,
  ): boolean {
    // Encoded and decoded as on the wire: what a basic.return would carry back.
    const frame = defs.encodeProperties(defs.BasicProperties, 1, content.length, properties);
    const payload = frame.subarray(7, frame.length - 1);
    const decoded = defs.decode(defs.BasicProperties, payload.subarray(12));
    this.published.push({
      exchange: fields.exchange,
      routingKey: fields.routingKey,
      properties: decoded as WirePublish['properties'],
    });
    return true;
  }
  /** Called with each method amqplib sends (a channel.close, for one). */
  onMethod: (method: number) => void = () => {};
  sendMethod(_channel: number, method: number): boolean {
    this.onMethod(method);
    return true;
  }
  releaseChannel(): void {}
}

/**
 * amqplib's `ConfirmChannel` on a connection that records what it would send and receives only
 * the frames the test gives it, in the test's order: for broker answer orders too rare to test
 * by chance on a real broker.
 */
export class FrameChannel {
  readonly #connection = new RecordingConnection();
  readonly #channel: AmqplibChannel;

  #closeRequested = false;

  constructor() {
    this.#channel = new AmqplibConfirmChannel(this.#connection);
    this.#channel.on('error', () => {});
    // The client closes the channel: the broker answers on its next turn, as over a socket.
    this.#connection.onMethod = (method) => {
      if (method !== defs.ChannelClose) return;
      this.#closeRequested = true;
      setImmediate(() => this.#channel.accept({ id: defs.ChannelCloseOk, fields: {} }));
    };
  }

  /** The client has sent channel.close. */
  get closeRequested(): boolean {
    return this.#closeRequested;
  }

  get confirmChannel(): ConfirmChannel {
    return this.#channel as unknown as ConfirmChannel;
  }

  /** Publishes in the order the broker read them (index = delivery tag - 1). */
  get published(): readonly WirePublish[] {
    return this.#connection.published;
  }

  /** basic.return of publish `index` (0-based), with the properties it went out with. */
  returnOf(index: number): void {
    const sent = this.published[index]!;
    this.#channel.accept({
      id: defs.BasicReturn,
      fields: {
        replyCode: 312,
        replyText: 'NO_ROUTE',
        exchange: sent.exchange,
        routingKey: sent.routingKey,
      },
    });
    this.#channel.accept({
      id: defs.BasicProperties,
      fields: sent.properties as Record<string, unknown>,
      size: 0,
    });
  }

  /** basic.ack for publish `index` (0-based), `multiple`: every publish up to it. */
  ack(index: number, multiple = false): void {
    this.#channel.accept({ id: defs.BasicAck, fields: { deliveryTag: index + 1, multiple } });
  }

  /** basic.nack for publish `index` (0-based), `multiple`: every publish up to it. */
  nack(index: number, multiple = false): void {
    this.#channel.accept({
      id: defs.BasicNack,
      fields: { deliveryTag: index + 1, multiple, requeue: false },
    });
  }

  /** The broker closes the channel (channel.close with `replyCode`). */
  closeByBroker(replyCode: number, replyText = 'closed by the test'): void {
    this.#channel.accept({
      id: defs.ChannelClose,
      fields: { replyCode, replyText, classId: 60, methodId: 40 },
    });
  }

  /** The connection goes: amqplib closes its channels with no frame of their own. */
  loseConnection(): void {
    this.#channel.toClosed('connection lost in the test');
  }
}
