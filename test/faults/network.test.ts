import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, DATABASE_URL } from '../support/env.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import {
  type FaultScenario,
  runScenario,
  type ScenarioOptions,
  withApplicationName,
} from './fault-scenario.js';

// The network is the fault here: the relay and the consumer reach the machine's RabbitMQ through
// proxies of their own, which cut, freeze, half-close and slow their connections. Nobody else's
// connections are touched, so the machine's services serve.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);
const broker = new URL(AMQP_URL);

interface Links {
  readonly relay: TcpProxy;
  readonly consumer: TcpProxy;
}

/** A scenario whose relay and consumer each talk to the broker through a proxy. */
async function withLinks(
  name: string,
  body: (sc: FaultScenario, links: Links) => Promise<void>,
  options: Partial<ScenarioOptions> = {},
): Promise<void> {
  const links: Links = {
    relay: await TcpProxy.start(broker.hostname, Number(broker.port || 5672)),
    consumer: await TcpProxy.start(broker.hostname, Number(broker.port || 5672)),
  };
  try {
    await runScenario({ name, databaseUrl, amqpUrl: AMQP_URL, ...options }, async (sc) => {
      await sc.startConsumer({ amqpUrl: links.consumer.url(AMQP_URL) });
      await sc.startRelay({ amqpUrl: links.relay.url(AMQP_URL) });
      await body(sc, links);
    });
  } finally {
    await links.relay.close();
    await links.consumer.close();
  }
}

describe('faults: the network', () => {
  before(async () => {
    await reapLeftovers();
  });
  after(() => {
    printResults('Fault suite: the network');
  });

  it('connections reset mid-stream', { timeout: 90_000 }, () =>
    withLinks('proxy: every connection reset mid-stream', async (sc, links) => {
      sc.traffic({ total: 1000, pauseMs: 5 });
      await sc.waitForEffects(300);
      links.relay.resetAll();
      links.consumer.resetAll();
      sc.healed();
      await sc.finish({
        evidence: (o) => {
          assert.ok(o.relays.amqpConnects >= 2, 'the relay did not reconnect');
          assert.ok(o.consumerConnects >= 2, 'the consumer did not reconnect');
          return `TCP resets; relay and consumer reconnected (${o.relays.amqpConnects}, ${o.consumerConnects} connections)`;
        },
      });
    }),
  );

  it('hung links (paused longer than twice the heartbeat)', { timeout: 90_000 }, () =>
    withLinks('proxy: links paused 3 s (heartbeat 1 s)', async (sc, links) => {
      sc.traffic({ total: 1000, pauseMs: 5 });
      await sc.waitForEffects(300);
      links.relay.pause();
      links.consumer.pause();
      await sleep(3000);
      links.relay.resume();
      links.consumer.resume();
      sc.healed();
      await sc.finish({
        evidence: (o) => {
          assert.ok(o.relays.amqpConnects >= 2, 'the relay did not notice the dead link');
          assert.ok(o.consumerConnects >= 2, 'the consumer did not notice the dead link');
          return `heartbeat timeouts: relay ${o.relays.amqpConnects}, consumer ${o.consumerConnects} connections; ${o.relays.retried} rows retried`;
        },
      });
    }),
  );

  it(
    'lost confirms: the link from the broker to the relay drops everything',
    { timeout: 90_000 },
    () =>
      withLinks('proxy: broker-to-relay dropped (lost confirms)', async (sc, links) => {
        sc.traffic({ total: 1000, pauseMs: 5 });
        await sc.waitForEffects(300);
        links.relay.drop('toClient');
        await sleep(3000);
        // The link comes back, and the connections born while it was down lost their handshake.
        links.relay.heal();
        links.relay.resetAll();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(links.relay.counts.toClient.dropped > 0, 'nothing was dropped');
            // Unconfirmed rows went back: retried after the publish timeout, or released
            // untouched when the missed heartbeats ended the connection first.
            const back = o.relays.retried + o.relays.released;
            assert.ok(back > 0, 'no publish went unconfirmed');
            assert.ok(o.duplicatesDelivered > 0, 'the unconfirmed messages had not been routed');
            return `${links.relay.counts.toClient.dropped} bytes dropped; ${back} unconfirmed rows published again (${o.relays.retried} retried, ${o.relays.released} released), ${o.duplicatesDelivered} copies delivered twice`;
          },
        });
      }),
  );

  it(
    'lost publishes: the link from the relay to the broker drops everything',
    { timeout: 90_000 },
    () =>
      withLinks('proxy: relay-to-broker dropped (lost publishes)', async (sc, links) => {
        sc.traffic({ total: 1000, pauseMs: 5 });
        await sc.waitForEffects(300);
        links.relay.drop('toServer');
        await sleep(3000);
        links.relay.heal();
        links.relay.resetAll();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(links.relay.counts.toServer.dropped > 0, 'nothing was dropped');
            assert.ok(
              o.relays.retried > 0 || o.relays.amqpConnects >= 2,
              'the relay noticed nothing',
            );
            return `${links.relay.counts.toServer.dropped} bytes dropped; ${o.relays.retried} rows retried, relay ${o.relays.amqpConnects} connections`;
          },
        });
      }),
  );

  it(
    'lost acks: the link from the consumer to the broker drops everything',
    { timeout: 90_000 },
    () =>
      withLinks('proxy: consumer-to-broker dropped (lost acks)', async (sc, links) => {
        sc.traffic({ total: 1000, pauseMs: 5 });
        await sc.waitForEffects(300);
        const before = await sc.effected();
        links.consumer.drop('toServer');
        // Handled and committed, but the acks never arrive: the broker must deliver them again.
        await waitFor(
          'messages handled behind the dropped link',
          async () => (await sc.effected()) > before,
          10_000,
        );
        await sleep(3000);
        links.consumer.heal();
        links.consumer.resetAll();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(o.consumerConnects >= 2, 'the consumer did not reconnect');
            assert.ok(o.duplicatesAbsorbed > 0, 'nothing was delivered again');
            return `acks lost; ${o.duplicatesAbsorbed} redeliveries absorbed by the dedupe row`;
          },
        });
      }),
  );

  it('slow links: latency and a throttle on every link', { timeout: 90_000 }, () =>
    withLinks('proxy: 100 ms latency, 64 KiB/s throttle', async (sc, links) => {
      for (const link of [links.relay, links.consumer]) {
        link.latency(100);
        link.throttle(64 * 1024);
      }
      await sc.traffic({ total: 600, pauseMs: 5 }).done;
      await sc.waitForEffects(300);
      for (const link of [links.relay, links.consumer]) link.heal();
      sc.healed();
      await sc.finish({
        evidence: () => {
          const delayed =
            links.relay.counts.toServer.delayed + links.consumer.counts.toClient.delayed;
          assert.ok(delayed > 0, 'nothing was delayed');
          return `${delayed} chunks delayed; no timeouts needed`;
        },
      });
    }),
  );

  it('the application pool while the broker is slow', { timeout: 90_000 }, () =>
    withLinks(
      'app pool (5) shared with the consumer, broker 1 s away',
      async (sc, links) => {
        // Every frame between the consumer and the broker takes a second each way, so an ack
        // or a retry copy's confirm takes two. A consumer holding a connection across that
        // wait would starve the business's transactions of the five connections they share.
        links.consumer.latency(1000);
        const traffic = sc.traffic({ total: 300, pauseMs: 10 });
        await traffic.done;
        await sc.waitForEffects(300, 30_000);
        links.consumer.heal();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(o.consumer.retried > 0, 'no retry copy was published on the slow link');
            assert.ok(links.consumer.counts.toClient.delayed > 0, 'nothing was delayed');
            assert.ok(
              traffic.slowestMs() < 1000,
              `a business transaction took ${traffic.slowestMs()} ms: a connection was held across broker I/O`,
            );
            return `${o.consumer.retried} retry copies published 1 s away; slowest business transaction ${traffic.slowestMs()} ms`;
          },
        });
      },
      {
        ordered: false,
        shareAppPool: true,
        appPoolSize: 5,
        heartbeatSeconds: 5,
        consumer: {
          // A prefetch window wide enough that the slow acks do not throttle the consumer.
          definition: { prefetch: 100 },
          after: async (_payload, context) => {
            if (context.attempt === 1 && context.businessKey.endsWith('0-3'))
              throw new Error('flaky');
          },
        },
      },
    ),
  );

  it('half-open Postgres connections under the relay', { timeout: 90_000 }, async () => {
    const database = new URL(DATABASE_URL);
    const pgLink = await TcpProxy.start(database.hostname, Number(database.port || 5432));
    try {
      await runScenario(
        {
          name: 'proxy: relay-to-Postgres connections blackholed',
          databaseUrl,
          amqpUrl: AMQP_URL,
          // The relay gives a statement 2 x publish timeout + 10 s (14 s here) before it
          // drops the connection, and its rollback as long again.
          drainBoundMs: 45_000,
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay({}, (url) => pgLink.url(url));
          sc.traffic({ total: 1000, pauseMs: 5 });
          await sc.waitForEffects(200);
          // The relay's connections go silent, without a FIN, as after a failover or an
          // expired NAT entry; Postgres itself is fine, and new connections get through.
          const silenced = pgLink.openConnections;
          pgLink.blackholeOpen();
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              assert.ok(silenced > 0, 'no connection was blackholed');
              assert.ok(o.relays.errors > 0, 'the relay never gave up on a dead connection');
              return `${silenced} connections went silent; the relay gave up on them (${o.relays.errors} failed batches) and reconnected`;
            },
          });
        },
      );
    } finally {
      await pgLink.close();
    }
  });
});
