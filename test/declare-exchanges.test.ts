import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import { defineConsumer } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { topologyOf, topologyQueueNames } from '../src/consumer/consumer-topology.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { silentLogger } from '../src/util/logger.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

describe('declaring the exchanges the outbox publishes to', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  const relays: OutboxRelay[] = [];
  before(async () => {
    t = await testDatabase('declare');
    broker = await TestBroker.open();
  });
  after(async () => {
    for (const relay of relays) await relay.stop();
    for (const name of ['orders', 'relay-declared', 'missing', 'ae-orders']) {
      await broker.channel.deleteExchange(broker.name(name)).catch(() => {});
    }
    await broker.close();
    await t.close();
  });

  function relay(options: Partial<ConstructorParameters<typeof OutboxRelay>[0]> = {}) {
    const r = new OutboxRelay({
      pool: t.pool,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      pollIntervalMs: 100,
      reconnectBackoff: { initialMs: 20, maxMs: 200 },
      ...options,
    });
    relays.push(r);
    return r;
  }

  async function write(exchange: string, n: number) {
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db
      .transaction()
      .execute((trx) => writer.add(trx, { exchange, routingKey: 'k', payload: { n } }));
  }

  it('declareExchanges declares with the alternate exchange, and again as a no-op', async () => {
    const unrouted = await broker.exchange('unrouted', 'fanout');
    const kept = await broker.queue('kept', unrouted);
    const orders = broker.name('orders');
    const declarations = [{ name: orders, type: 'topic' as const, alternateExchange: unrouted }];
    await declareExchanges(AMQP_URL, declarations);
    await declareExchanges(AMQP_URL, declarations);
    // Nothing is bound to orders: the message goes to its alternate exchange.
    broker.channel.publish(orders, 'order.placed', Buffer.from('{}'));
    await broker.waitForDepth(kept, 1);
  });

  it('declareExchanges fails with a TopologyConflictError for other settings', async () => {
    await assert.rejects(
      declareExchanges(AMQP_URL, [{ name: broker.name('orders'), type: 'fanout' }]),
      { name: 'TopologyConflictError' },
    );
    // An alternate exchange for one that exists without: the error gives the policy way out.
    const bare = await broker.exchange('bare', 'topic', { durable: true });
    await assert.rejects(
      declareExchanges(AMQP_URL, [{ name: bare, alternateExchange: broker.name('unrouted') }]),
      (error: unknown) => {
        assert.equal((error as Error).name, 'TopologyConflictError', String(error));
        assert.match(
          (error as Error).message,
          /can get one by policy instead.*rabbitmqctl set_policy \S+ '\^.*\$' '\{"alternate-exchange":"<name>"\}' --apply-to exchanges/,
        );
        return true;
      },
    );
  });

  it('declareExchanges gives up on a broker that is down naming the URL, the option and why', async () => {
    // It said only "could not be reached within 30000 ms" (a first-hour probe).
    const url = `amqp://guest:secret@127.0.0.1:${await TcpProxy.freePort()}`;
    await assert.rejects(
      declareExchanges(url, [{ name: broker.name('down'), type: 'topic' }], {
        timeoutMs: 500,
        logger: silentLogger,
      }),
      (error: Error & { code?: string }) => {
        assert.equal(error.code, 'broker-unreachable');
        assert.match(
          error.message,
          /^RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ could not/,
        );
        assert.match(error.message, /within 500 ms \(option timeoutMs\)/);
        assert.match(error.message, /ECONNREFUSED/);
        assert.doesNotMatch(error.message, /secret/);
        return true;
      },
    );
  });

  it('declareExchanges refuses a name RabbitMQ would refuse, naming it, before connecting', async () => {
    for (const [name, says] of [
      ['p'.repeat(300), /must be at most 255 bytes/],
      ['amq.orders', /"amq.orders" is reserved/],
    ] as const) {
      await assert.rejects(
        declareExchanges('amqp://guest:guest@127.0.0.1:1', [{ name, type: 'topic' }]),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.equal(error.option, 'exchanges[0].name');
          assert.match(error.message, says);
          return true;
        },
      );
    }
  });

  it('a consumer starts on an exchange declared with an alternate exchange, which keeps it', async () => {
    // The README declares `orders` with an alternate exchange; consumers (and the Nest module)
    // declare the exchanges they bind to without one, which RabbitMQ answers with a 406.
    const unrouted = await broker.exchange('ae-unrouted', 'fanout');
    const kept = await broker.queue('ae-kept', unrouted);
    const orders = broker.name('ae-orders');
    await declareExchanges(AMQP_URL, [
      { name: orders, type: 'topic', alternateExchange: unrouted },
    ]);
    const received: unknown[] = [];
    const consumer = defineConsumer<{ n: number }>({
      name: broker.name('ae-consumer'),
      exchange: orders,
      routingKeys: ['order.placed'],
      queueType: 'classic',
      async handler(payload) {
        received.push(payload);
      },
    });
    const host = new ConsumerHost({
      db: t.db,
      amqpUrl: AMQP_URL,
      schema: t.schema,
      consumers: [consumer],
      logger: silentLogger,
      retention: false,
    });
    try {
      await host.start();
      // Declared again without one (as the relay's `exchanges` may be): accepted, nothing changes.
      await declareExchanges(AMQP_URL, [{ name: orders }]);
      const options = { contentType: 'application/json', messageId: 'ae-1' };
      broker.channel.publish(orders, 'order.placed', Buffer.from('{"n":1}'), options);
      broker.channel.publish(orders, 'order.shipped', Buffer.from('{"n":2}'), options);
      await waitFor('the routed message handled', () => received.length === 1);
      assert.deepEqual(received, [{ n: 1 }]);
      // The exchange kept its alternate exchange: the unrouted message reached it.
      await broker.waitForDepth(kept, 1);
      // Other settings are still refused: another type, or another alternate exchange.
      await assert.rejects(declareExchanges(AMQP_URL, [{ name: orders, type: 'fanout' }]), {
        name: 'TopologyConflictError',
        message: /Make the declaration \(.*declareExchanges/,
      });
      await assert.rejects(
        declareExchanges(AMQP_URL, [{ name: orders, alternateExchange: broker.name('other') }]),
        { name: 'TopologyConflictError' },
      );
    } finally {
      await host.stop();
      for (const q of topologyQueueNames(topologyOf(consumer))) {
        await broker.channel.deleteQueue(q).catch(() => {});
      }
    }
  });

  it('the relay declares its `exchanges` when it connects, so the first message goes', async () => {
    const unrouted = await broker.exchange('relay-unrouted', 'fanout');
    const kept = await broker.queue('relay-kept', unrouted);
    const exchange = broker.name('relay-declared');
    await write(exchange, 1);
    const r = relay({ exchanges: [{ name: exchange, alternateExchange: unrouted }] });
    await r.start();
    await broker.waitForDepth(kept, 1);
    assert.equal(r.stats().deferred, 0);
    await r.stop();
  });

  it('the relay declares its `exchanges` on connect with an empty outbox, before any consumer could', async () => {
    // They were declared only when a first row's exchange was checked (found by a probe): a
    // consumer started meanwhile declared the exchange without its alternate exchange.
    const unrouted = broker.name('relay-early-unrouted');
    const exchange = broker.name('relay-early');
    const r = relay({
      exchanges: [
        { name: exchange, type: 'topic', alternateExchange: unrouted },
        { name: unrouted, type: 'fanout' },
      ],
    });
    await r.start();
    try {
      await waitFor(
        'the exchanges declared',
        async () => (await broker.exchangeExists(exchange)) && broker.exchangeExists(unrouted),
      );
      assert.equal(await t.count('outbox'), 0);
    } finally {
      await r.stop();
      await broker.channel.deleteExchange(exchange);
      await broker.channel.deleteExchange(unrouted);
    }
  });

  it("an exchange the broker has with other settings holds up none of the relay's other declarations", async () => {
    const logger = recordingLogger();
    const other = await broker.exchange('relay-other-type', 'fanout');
    const unrouted = await broker.exchange('relay-beside-unrouted', 'fanout');
    const kept = await broker.queue('relay-beside-kept', unrouted);
    const declared = broker.name('relay-declared-beside');
    await write(declared, 1);
    const r = relay({
      logger,
      exchanges: [
        { name: other, type: 'topic' },
        { name: declared, type: 'topic', alternateExchange: unrouted },
      ],
    });
    await r.start();
    // Declared after the refused one, and published to: it reaches the alternate's queue.
    await broker.waitForDepth(kept, 1);
    const conflicts = logger.lines.filter(
      (l) => l.level === 'error' && l.text.includes(other) && /other settings/.test(l.text),
    );
    assert.equal(conflicts.length, 1, JSON.stringify(logger.lines));
    await r.stop();
    await broker.channel.deleteExchange(declared);
  });

  it('says once per missing exchange that its rows wait, and how to declare it', async () => {
    const logger = recordingLogger();
    const exchange = broker.name('missing');
    const r = relay({ logger });
    await r.start();
    await write(exchange, 1);
    await waitFor('the row put off three times', () => r.stats().deferred >= 3);
    const warnings = logger.lines.filter((l) => l.level === 'warn' && l.text.includes(exchange));
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!.text, /declareExchanges/);
    assert.match(warnings[0]!.text, /not parked/);
    assert.equal(await t.count('outbox_parked'), 0);

    await declareExchanges(AMQP_URL, [{ name: exchange }]);
    await waitFor('the row published once declared', async () => (await t.count('outbox')) === 0);
  });
});
