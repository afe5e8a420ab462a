import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import * as amqp from 'amqplib';
import { AMQP_URL } from './env.js';

// A publisher as a Java or .NET service would be: its own encoding of the content header, so
// headers over amqplib's 64 KiB encoding buffer (RabbitMQ takes up to its frame_max, 128 KiB)
// and a `timestamp` property amqplib cannot write (2^64 - 1) reach the consumer. Only the method
// and body frames are amqplib's; its package exports only the public API, hence the paths.
const require = createRequire(import.meta.url);
const lib = join(dirname(require.resolve('amqplib')), 'lib');
const codec = require(join(lib, 'codec.js')) as {
  encodeTable(buffer: Buffer, table: object, offset: number): number;
};
const defs = require(join(lib, 'defs.js')) as {
  encodeMethod(method: number, channel: number, fields: object): Buffer;
};
const frames = require(join(lib, 'frame.js')) as {
  makeBodyFrame(channel: number, payload: Buffer): Buffer;
};

/** The properties this publisher writes. */
export interface ForeignProperties {
  readonly contentType?: string;
  readonly messageId?: string;
  readonly headers?: Record<string, unknown>;
  /** Any unsigned 64-bit value. */
  readonly timestamp?: bigint;
}

const FRAME_HEADER = 2;
const FRAME_END = 0xce;
const BASIC_CLASS = 60;

function shortString(value: string): Buffer {
  const bytes = Buffer.from(value);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** A content header frame with `properties`, persistent, in AMQP's property order. */
function contentHeaderFrame(channel: number, bodySize: number, p: ForeignProperties): Buffer {
  const parts: Buffer[] = [];
  let flags = 0;
  if (p.contentType !== undefined) {
    flags |= 0x8000;
    parts.push(shortString(p.contentType));
  }
  if (p.headers !== undefined) {
    flags |= 0x2000;
    const table = Buffer.alloc(1024 * 1024);
    parts.push(table.subarray(0, codec.encodeTable(table, p.headers, 0)));
  }
  flags |= 0x1000;
  parts.push(Buffer.from([2]));
  if (p.messageId !== undefined) {
    flags |= 0x0080;
    parts.push(shortString(p.messageId));
  }
  if (p.timestamp !== undefined) {
    flags |= 0x0040;
    const t = Buffer.alloc(8);
    t.writeBigUInt64BE(p.timestamp);
    parts.push(t);
  }
  const fixed = Buffer.alloc(14);
  fixed.writeUInt16BE(BASIC_CLASS, 0);
  fixed.writeUInt16BE(0, 2);
  fixed.writeBigUInt64BE(BigInt(bodySize), 4);
  fixed.writeUInt16BE(flags, 12);
  const payload = Buffer.concat([fixed, ...parts]);
  const head = Buffer.alloc(7);
  head.writeUInt8(FRAME_HEADER, 0);
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(payload.length, 3);
  return Buffer.concat([head, payload, Buffer.from([FRAME_END])]);
}

interface AmqplibConnection {
  channels: Array<{ buffer: { write(bytes: Buffer): boolean } }>;
  sendMessage(
    channel: number,
    method: number,
    fields: object,
    propertiesId: number,
    properties: object,
    content: Buffer,
  ): boolean;
}

/** Publishes with properties amqplib could not send, on a connection of its own. */
export class ForeignPublisher {
  readonly #model: ChannelModel;
  readonly #channel: ConfirmChannel;
  /** What the next publish writes, in place of amqplib's encoding of its options. */
  #next: ForeignProperties | undefined;

  private constructor(model: ChannelModel, channel: ConfirmChannel) {
    this.#model = model;
    this.#channel = channel;
    const connection = (model as unknown as { connection: AmqplibConnection }).connection;
    connection.sendMessage = (channel, method, fields, _propertiesId, _properties, content) => {
      const frame = Buffer.concat([
        defs.encodeMethod(method, channel, fields),
        contentHeaderFrame(channel, content.length, this.#next ?? {}),
        frames.makeBodyFrame(channel, content),
      ]);
      return connection.channels[channel]!.buffer.write(frame);
    };
  }

  static async open(): Promise<ForeignPublisher> {
    const model = await amqp.connect(AMQP_URL);
    const channel = await model.createConfirmChannel();
    return new ForeignPublisher(model, channel);
  }

  /** Publishes and waits for the broker's confirm. */
  async publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    properties: ForeignProperties,
  ): Promise<void> {
    this.#next = properties;
    const confirmed = new Promise<void>((resolve, reject) =>
      this.#channel.publish(exchange, routingKey, content, {}, (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    this.#next = undefined;
    await confirmed;
  }

  async close(): Promise<void> {
    await this.#model.close();
  }
}
