import type { INestApplicationContext } from '@nestjs/common';
import type { Channel, ChannelModel, Message } from 'amqplib';
import * as amqp from 'amqplib';
import { exchangeExistsOn } from '../../src/amqp/exchange-exists.js';
import { topologyQueueNames } from '../../src/consumer/consumer-topology.js';
import { OutboxService } from '../../src/nestjs/outbox.service.js';
import type { OutboxModuleOptions } from '../../src/nestjs/outbox-module-options.js';
import { consoleLogger, silentLogger } from '../../src/util/logger.js';
import { AMQP_URL, DATABASE_URL } from './env.js';
import { type TestDatabase, testDatabase, uniqueName } from './test-database.js';

/**
 * A schema and a broker name prefix of one test file's own, module options on quick settings,
 * and clean-up of every queue and exchange the applications declared.
 */
export class NestFixture {
  readonly t: TestDatabase;
  /** Put in front of every exchange and queue name, so test files never meet on the broker. */
  readonly prefix = `${uniqueName('nest')}.`;
  readonly #connection: ChannelModel;
  readonly #channel: Channel;
  readonly #queues = new Set<string>();
  readonly #exchanges = new Set<string>();
  readonly #apps = new Set<INestApplicationContext>();

  private constructor(t: TestDatabase, connection: ChannelModel, channel: Channel) {
    this.t = t;
    this.#connection = connection;
    this.#channel = channel;
  }

  static async open(prefix: string): Promise<NestFixture> {
    const t = await testDatabase(prefix);
    // See ConsumerFixture: a checked-out client whose session ends must not kill the process.
    t.pool.on('connect', (client) => client.on('error', () => {}));
    const connection = await amqp.connect(AMQP_URL);
    connection.on('error', () => {});
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    return new NestFixture(t, connection, channel);
  }

  /**
   * Module options for this file: the test schema and Kysely instance, a relay with its own
   * pool, and short timeouts and backoffs so failures show quickly.
   */
  options(overrides: Partial<OutboxModuleOptions> = {}): OutboxModuleOptions {
    return {
      db: this.t.db,
      databaseUrl: DATABASE_URL,
      amqpUrl: AMQP_URL,
      schema: this.t.schema,
      prefix: this.prefix,
      relay: {
        concurrency: 2,
        pollIntervalMs: 200,
        heartbeatSeconds: 2,
        publishTimeoutMs: 5000,
        stopTimeoutMs: 5000,
        retry: { backoff: { initialMs: 20, maxMs: 200 } },
        reconnectBackoff: { initialMs: 20, maxMs: 200 },
      },
      consumers: {
        heartbeatSeconds: 2,
        reconnectBackoff: { initialMs: 20, maxMs: 200 },
        publishTimeoutMs: 5000,
        startTimeoutMs: 10_000,
        stopTimeoutMs: 10_000,
        retention: false,
      },
      logger: process.env.OUTBOXKIT_TEST_LOG ? consoleLogger('debug') : silentLogger,
      ...overrides,
    };
  }

  /** Starts an application and remembers what it declared, for `close()`. */
  async init<A extends INestApplicationContext>(app: A): Promise<A> {
    this.#apps.add(app);
    await app.init();
    this.track(app);
    return app;
  }

  /** Remembers the queues and exchanges of an application's handlers, for `close()`. */
  track(app: INestApplicationContext): void {
    for (const t of app.get(OutboxService).topologies) {
      this.#exchanges.add(t.exchange);
      for (const q of topologyQueueNames(t)) this.#queues.add(q);
    }
  }

  /** Closes an application (its hooks stop the outbox). */
  async closeApp(app: INestApplicationContext): Promise<void> {
    this.#apps.delete(app);
    await app.close();
  }

  name(suffix: string): string {
    return `${this.prefix}${suffix}`;
  }

  /** Messages ready in a queue, or undefined when it does not exist. */
  async depth(queue: string): Promise<number | undefined> {
    const channel = await this.#connection.createChannel();
    channel.on('error', () => {});
    try {
      return (await channel.checkQueue(queue)).messageCount;
    } catch {
      return undefined;
    } finally {
      await channel.close().catch(() => {});
    }
  }

  /** Takes every message ready in a queue. */
  async drain(queue: string): Promise<Message[]> {
    const out: Message[] = [];
    for (;;) {
      const message = await this.#channel.get(queue, { noAck: true });
      if (message === false) return out;
      out.push(message);
    }
  }

  exchangeExists(exchange: string): Promise<boolean> {
    return exchangeExistsOn(this.#connection, exchange);
  }

  async query<R>(text: string, params: unknown[] = []): Promise<R[]> {
    return (await this.t.pool.query(text, params)).rows as R[];
  }

  async close(): Promise<void> {
    for (const app of this.#apps) await app.close().catch(() => {});
    for (const q of this.#queues) await this.#channel.deleteQueue(q).catch(() => {});
    for (const e of this.#exchanges) await this.#channel.deleteExchange(e).catch(() => {});
    await this.#connection.close().catch(() => {});
    await this.t.close();
  }

  /** Declares a classic queue bound to `exchange` with `#`, for `close()` to delete. */
  async bindQueue(queue: string, exchange: string): Promise<void> {
    this.#queues.add(queue);
    await this.#channel.assertQueue(queue, { durable: false });
    await this.#channel.bindQueue(queue, exchange, '#');
  }

  /** Exchanges declared by name (without handlers), for `close()` to delete. */
  trackExchange(name: string): void {
    this.#exchanges.add(name);
  }
}
