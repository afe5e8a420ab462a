import type { Channel, ChannelModel, Message, Options } from 'amqplib';
import * as amqp from 'amqplib';
import { exchangeExistsOn } from '../../src/amqp/exchange-exists.js';
import { AMQP_URL } from './env.js';
import { uniqueName } from './test-database.js';
import { waitFor } from './wait-for.js';

/** Exchanges and queues with names of their own for one test, deleted by `close()`. */
export class TestBroker {
  readonly prefix = uniqueName('t');
  #connection!: ChannelModel;
  channel!: Channel;
  readonly #exchanges: string[] = [];
  readonly #queues: string[] = [];

  static async open(): Promise<TestBroker> {
    const broker = new TestBroker();
    broker.#connection = await amqp.connect(AMQP_URL);
    broker.#connection.on('error', () => {});
    broker.channel = await broker.#connection.createChannel();
    broker.channel.on('error', () => {});
    return broker;
  }

  name(suffix: string): string {
    return `${this.prefix}.${suffix}`;
  }

  async exchange(
    suffix: string,
    type = 'topic',
    options: Options.AssertExchange = {},
  ): Promise<string> {
    const name = this.name(suffix);
    await this.channel.assertExchange(name, type, {
      durable: false,
      autoDelete: false,
      ...options,
    });
    this.#exchanges.push(name);
    return name;
  }

  /** A queue bound to `exchange` with `routingKey`. */
  async queue(
    suffix: string,
    exchange?: string,
    routingKey = '#',
    options: Options.AssertQueue = {},
  ): Promise<string> {
    const name = this.name(suffix);
    await this.channel.assertQueue(name, { durable: true, ...options });
    if (exchange) await this.channel.bindQueue(name, exchange, routingKey);
    this.#queues.push(name);
    return name;
  }

  /** Whether the exchange exists, on a channel of its own (a 404 closes the channel). */
  exchangeExists(name: string): Promise<boolean> {
    return exchangeExistsOn(this.#connection, name);
  }

  async depth(queue: string): Promise<number> {
    return (await this.channel.checkQueue(queue)).messageCount;
  }

  /** Takes every message now in the queue (acking each), in queue order. */
  async drain(queue: string): Promise<Message[]> {
    const out: Message[] = [];
    for (;;) {
      const message = await this.channel.get(queue, { noAck: true });
      if (message === false) return out;
      out.push(message);
    }
  }

  /** Waits until the queue holds at least `count` messages. */
  async waitForDepth(queue: string, count: number, timeoutMs = 30_000): Promise<number> {
    return waitFor(
      `${count} messages in ${queue}`,
      async () => {
        const depth = await this.depth(queue);
        return depth >= count ? depth : undefined;
      },
      timeoutMs,
    );
  }

  async close(): Promise<void> {
    for (const q of this.#queues) await this.channel.deleteQueue(q).catch(() => {});
    for (const e of this.#exchanges) await this.channel.deleteExchange(e).catch(() => {});
    await this.#connection.close().catch(() => {});
  }
}

export function payloadOf(message: Message): unknown {
  return JSON.parse(message.content.toString());
}
