import type { ChannelModel, ConfirmChannel, Message, Options, Replies } from 'amqplib';
import * as amqp from 'amqplib';
import type { ConsumeContext, ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../../src/consumer/consumer-topology.js';
import { consoleLogger, silentLogger } from '../../src/util/logger.js';
import { AMQP_URL } from './env.js';
import { TestBroker } from './test-broker.js';
import { type TestDatabase, testDatabase } from './test-database.js';
import { waitFor } from './wait-for.js';

/** One effect row per handler commit; no unique constraint, so duplicates would show. */
export interface EffectRow {
  id: string;
  consumer: string;
  key: string;
  attempt: number;
}

/**
 * A schema, broker names and a publishing channel of one test file's own, with consumer hosts
 * on quick settings; `close()` stops the hosts and deletes everything they declared.
 */
export class ConsumerFixture {
  readonly t: TestDatabase;
  readonly broker: TestBroker;
  readonly #publisher: ChannelModel;
  readonly channel: ConfirmChannel;
  readonly #hosts: ConsumerHost[] = [];
  readonly #queues = new Set<string>();
  readonly #exchanges = new Set<string>();

  private constructor(
    t: TestDatabase,
    broker: TestBroker,
    publisher: ChannelModel,
    channel: ConfirmChannel,
  ) {
    this.t = t;
    this.broker = broker;
    this.#publisher = publisher;
    this.channel = channel;
  }

  static async open(prefix: string): Promise<ConsumerFixture> {
    const t = await testDatabase(prefix);
    // A checked-out pg client whose session is terminated emits 'error'; unheard, it kills the
    // process. Applications need the same guard (other test files terminate sessions too).
    const guarded = new WeakSet<object>();
    t.pool.on('acquire', (client) => {
      if (guarded.has(client)) return;
      guarded.add(client);
      client.on('error', () => {});
    });
    await t.pool.query(`CREATE TABLE "${t.schema}".effects (
      id bigserial PRIMARY KEY, consumer text NOT NULL, key text NOT NULL, attempt int NOT NULL)`);
    const broker = await TestBroker.open();
    const publisher = await amqp.connect(AMQP_URL);
    publisher.on('error', () => {});
    const channel = await publisher.createConfirmChannel();
    channel.on('error', () => {});
    return new ConsumerFixture(t, broker, publisher, channel);
  }

  name(suffix: string): string {
    return this.broker.name(suffix);
  }

  /** A consumer on quick settings: classic queue, retries after 20 ms then 40 ms... */
  definition<P = unknown>(
    suffix: string,
    handler: ConsumerDefinition<P>['handler'],
    overrides: Partial<ConsumerDefinition<P>> = {},
  ): ConsumerDefinition<P> {
    return {
      name: this.name(suffix),
      exchange: this.name('events'),
      routingKeys: ['#'],
      queueType: 'classic',
      retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 200 } },
      timeoutMs: 10_000,
      handler,
      ...overrides,
    };
  }

  /** A handler that records one effect row per call, in the handler's transaction. */
  recordEffect = async (_payload: unknown, ctx: ConsumeContext): Promise<void> => {
    await ctx.trx
      .insertInto(`${this.t.schema}.effects`)
      .values({ consumer: ctx.consumer, key: ctx.businessKey, attempt: ctx.attempt })
      .execute();
  };

  async host(
    consumers: ConsumerDefinition[],
    options: Partial<ConsumerHostOptions<unknown>> = {},
    start = true,
  ): Promise<ConsumerHost> {
    const host = new ConsumerHost({
      db: this.t.db,
      amqpUrl: AMQP_URL,
      schema: this.t.schema,
      consumers,
      heartbeatSeconds: 2,
      reconnectBackoff: { initialMs: 20, maxMs: 200 },
      publishTimeoutMs: 5000,
      startTimeoutMs: 10_000,
      stopTimeoutMs: 10_000,
      retention: false,
      logger: process.env.OUTBOXKIT_TEST_LOG ? consoleLogger('debug') : silentLogger,
      ...options,
    });
    this.#hosts.push(host);
    for (const c of consumers) this.#track(c);
    if (start) await host.start();
    return host;
  }

  #track(definition: ConsumerDefinition): void {
    const topology = topologyOf(definition);
    for (const q of topologyQueueNames(topology)) this.#queues.add(q);
    this.#exchanges.add(topology.exchange);
  }

  /** Publishes and waits for the broker's confirm. */
  async publish(
    routingKey: string,
    content: unknown,
    options: Options.Publish = {},
    exchange = this.name('events'),
  ): Promise<void> {
    const body = Buffer.isBuffer(content) ? content : Buffer.from(JSON.stringify(content));
    await new Promise<void>((resolve, reject) => {
      this.channel.publish(
        exchange,
        routingKey,
        body,
        { contentType: 'application/json', persistent: true, ...options },
        (error) => (error ? reject(error) : resolve()),
      );
    });
  }

  /** Publishes many without waiting for each confirm in turn. */
  async publishMany(
    messages: Array<{ routingKey: string; content: unknown; options?: Options.Publish }>,
  ): Promise<void> {
    for (const m of messages) {
      const body = Buffer.isBuffer(m.content) ? m.content : Buffer.from(JSON.stringify(m.content));
      this.channel.publish(this.name('events'), m.routingKey, body, {
        contentType: 'application/json',
        persistent: true,
        ...m.options,
      });
    }
    await this.channel.waitForConfirms();
  }

  async effects(): Promise<EffectRow[]> {
    const { rows } = await this.t.pool.query<EffectRow>(
      `SELECT id, consumer, key, attempt FROM "${this.t.schema}".effects ORDER BY id`,
    );
    return rows;
  }

  async effectCount(): Promise<number> {
    return this.t.count('effects');
  }

  /** Every message in `queue` now, acked (removed). */
  async drain(queue: string): Promise<Message[]> {
    return this.broker.drain(queue);
  }

  /** The queue's counts, or undefined when it does not exist (on a channel of its own, which a 404 closes). */
  async queueInfo(queue: string): Promise<Replies.AssertQueue | undefined> {
    const channel = await this.#publisher.createChannel();
    channel.on('error', () => {});
    try {
      return await channel.checkQueue(queue);
    } catch {
      return undefined;
    } finally {
      await channel.close().catch(() => {});
    }
  }

  async depth(queue: string): Promise<number> {
    return this.broker.depth(queue);
  }

  async waitForDepth(queue: string, count: number, timeoutMs = 20_000): Promise<void> {
    await waitFor(
      `${count} messages in ${queue}`,
      async () => (await this.depth(queue)) >= count,
      timeoutMs,
    );
  }

  /** The pool got every connection back: no transaction left open by the consumer. */
  assertPoolIdle(): void {
    const { pool } = this.t;
    if (pool.waitingCount !== 0 || pool.totalCount !== pool.idleCount) {
      throw new Error(
        `pool not idle: total ${pool.totalCount}, idle ${pool.idleCount}, waiting ${pool.waitingCount}`,
      );
    }
  }

  async stopHosts(): Promise<void> {
    await Promise.all(this.#hosts.splice(0).map((h) => h.stop()));
  }

  async close(): Promise<void> {
    await this.stopHosts();
    for (const q of this.#queues) await this.channel.deleteQueue(q).catch(() => {});
    for (const e of this.#exchanges) await this.channel.deleteExchange(e).catch(() => {});
    await this.#publisher.close().catch(() => {});
    await this.broker.close();
    await this.t.close();
  }
}
