import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ParkedMessages } from '../../src/dead-letters/parked-messages.js';
import { DATABASE_URL } from '../support/env.js';
import { waitFor } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import { runScenario, withApplicationName } from './fault-scenario.js';
import type { PrivateRabbitMq } from './private-rabbitmq.js';
import { PrivateRabbitMqCluster } from './private-rabbitmq-cluster.js';

// A classic durable queue lives on one node of a cluster. While that node is down, RabbitMQ 3.10
// lists the queue as `down` and keeps its bindings, yet a mandatory publish routed only to it is
// returned 312 NO_ROUTE and acked, exactly as if nothing were bound (a raw amqplib probe saw the
// same after stop_app and kill -9; one publish in flight at the stop was nacked). The relay
// cannot tell the two apart, so it parks the rows, and they stay parked after the node is back.
// These scenarios pin that down and prove the way back: the consumer's queue is homed on node2,
// the relay publishes through node1, node2 goes away while traffic flows, and the parked rows
// are replayed by hand once it is back.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);

describe('faults: a classic queue whose node is down (two-node cluster)', () => {
  let cluster: PrivateRabbitMqCluster;
  before(async () => {
    await reapLeftovers();
    cluster = await PrivateRabbitMqCluster.start(2);
  });
  after(async () => {
    await cluster?.destroy();
    printResults('Fault suite: a classic queue whose node is down');
  });
  beforeEach(() => cluster?.healAll());

  /** The node whose name is in the queue's process id, as `list_queues` shows it. */
  async function homeOf(queue: string): Promise<string> {
    const table = await cluster.ctl('list_queues', '-q', '--no-table-headers', 'name', 'pid');
    const line = table.split('\n').find((l) => l.startsWith(`${queue}\t`));
    const node = line && /<([^<>]+@[^.<>]+)\./.exec(line)?.[1];
    if (!node) throw new Error(`no home node for ${queue} in: ${table}`);
    return cluster.label(node);
  }

  const faults: ReadonlyArray<{
    name: string;
    down: (node: PrivateRabbitMq) => Promise<void>;
    up: (node: PrivateRabbitMq) => Promise<void>;
  }> = [
    {
      name: 'stop_app',
      down: (node) => cluster.stopApp(node),
      up: (node) => cluster.startApp(node),
    },
    { name: 'kill -9', down: (node) => node.kill(), up: (node) => node.boot() },
  ];

  it(
    "with retry.unroutable, the classic queue's node down (stop_app): nothing parked, order kept",
    { timeout: 150_000 },
    () =>
      runScenario(
        {
          name: "cluster: classic queue's node down (stop_app), retry.unroutable",
          databaseUrl,
          amqpUrl: cluster.urls,
          queueType: 'classic',
          brokerState: (queues) => cluster.queueState(queues),
        },
        async (sc) => {
          const consumer = await sc.startConsumer({ amqpUrl: cluster.urlsFrom(1) });
          const relay = await sc.startRelay({
            amqpUrl: cluster.urlsFrom(0),
            retry: {
              unroutable: true,
              maxAttempts: 1000,
              backoff: { initialMs: 200, maxMs: 2000 },
            },
          });
          assert.equal(await homeOf(sc.queues.main), 'node2', 'the consumer queue is not on node2');
          const traffic = sc.traffic({ total: 100_000, pauseMs: 20, perTransaction: 5 });
          await sc.waitForEffects(300);
          const before = relay.counts();
          const downAt = Date.now();
          await cluster.stopApp(cluster.nodes[1]!);
          sc.mark('node2 stop_app');
          // Returned rows are retried, not parked: wait until some have been.
          await waitFor(
            'returned rows retried while node2 is down',
            () => relay.counts().retried - before.retried >= 20,
            30_000,
          );
          await sleep(Math.max(0, 3000 - (Date.now() - downAt)));
          await cluster.startApp(cluster.nodes[1]!);
          await cluster.waitUntilFormed();
          sc.mark('node2 back');
          const downMs = Date.now() - downAt;
          await sc.waitForEffects((await sc.effected()) + 300, 60_000);
          traffic.stop();
          await traffic.done;
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              const retried = relay.counts().retried - before.retried;
              assert.equal(relay.counts().parked, 0, 'rows parked');
              assert.equal(o.parked.size, 0, 'rows parked');
              return `node2 (stop_app, ${(downMs / 1000).toFixed(1)} s down) held the classic queue: returned rows retried ${retried} times, none parked, every row delivered once and in its key's order, no replay (consumer ${consumer.amqpConnects} connections, ${o.duplicatesAbsorbed} duplicates absorbed)`;
            },
          });
        },
      ),
  );

  for (const fault of faults) {
    it(
      `the node of the consumer's classic queue is down (${fault.name}) while the relay publishes through another`,
      { timeout: 150_000 },
      () =>
        runScenario(
          {
            name: `cluster: classic queue's node down (${fault.name}), parked rows replayed`,
            databaseUrl,
            amqpUrl: cluster.urls,
            queueType: 'classic',
            // A parked keyed row lets the rows of its key behind it go on (its replay comes
            // later than they do): per-key order cannot hold here, and is not checked.
            ordered: false,
            brokerState: (queues) => cluster.queueState(queues),
          },
          async (sc) => {
            // The consumer declares its topology on node2 (its queue lives there); the relay
            // publishes through node1, which stays up.
            const consumer = await sc.startConsumer({ amqpUrl: cluster.urlsFrom(1) });
            const relay = await sc.startRelay({ amqpUrl: cluster.urlsFrom(0) });
            const home = await homeOf(sc.queues.main);
            assert.equal(home, 'node2', 'the consumer queue is not on node2');
            const node = cluster.nodes[1]!;
            const traffic = sc.traffic({ total: 100_000, pauseMs: 20, perTransaction: 5 });
            await sc.waitForEffects(300);
            // The relay still publishes through node1 meanwhile: 300 rows' worth of answers.
            const answered = () => {
              const c = relay.counts();
              return c.published + c.parked + c.retried;
            };
            const before = { ...relay.counts(), answered: answered() };
            const downAt = Date.now();
            await fault.down(node);
            sc.mark(`node2 ${fault.name}`);
            await waitFor(
              '300 rows answered while node2 is down',
              () => answered() - before.answered >= 300,
              30_000,
            );
            await sleep(Math.max(0, 3000 - (Date.now() - downAt)));
            await fault.up(node);
            await cluster.waitUntilFormed();
            sc.mark('node2 back');
            const downMs = Date.now() - downAt;
            const during = relay.counts();
            const parkedDuringOutage = during.parked - before.parked;
            const publishedDuringOutage = during.published - before.published;
            const retriedDuringOutage = during.retried - before.retried;
            // Rows published after node2 is back are delivered: parking stops with the outage.
            // Counted from once the queue delivers again, so that a batch sent before the queue
            // was back, and answered by returns, is not taken for one sent after.
            await sc.waitForEffects((await sc.effected()) + 200, 60_000);
            const parkedAtHeal = relay.counts().parked;
            await sc.waitForEffects((await sc.effected()) + 200, 60_000);
            const parkedAfterHeal = relay.counts().parked - parkedAtHeal;
            traffic.stop();
            await traffic.done;
            // What an operator would do: put the parked rows back into the outbox.
            const parked = new ParkedMessages({ pool: sc.appPool, schema: sc.schema });
            const parkedRows = await parked.count();
            const unroutable = await parked.count({ reason: 'unroutable: 312 NO_ROUTE' });
            const replayed = await parked.replay({ reason: 'unroutable' });
            sc.mark(`${replayed.done} parked rows replayed`);
            sc.healed();
            await sc.finish({
              evidence: (o) => {
                assert.ok(parkedDuringOutage > 0, 'nothing parked while node2 was down');
                assert.equal(parkedAfterHeal, 0, 'rows parked after node2 was back');
                assert.equal(unroutable, parkedRows, 'rows parked for another reason');
                assert.equal(replayed.done, parkedRows, 'not every parked row was replayed');
                assert.equal(relay.counts().amqpConnects, 1, 'the relay lost its connection');
                return `node2 (${fault.name}, ${(downMs / 1000).toFixed(1)} s down) held the classic queue: ${parkedDuringOutage} rows published meanwhile were returned 312 NO_ROUTE and parked (${publishedDuringOutage} confirmed and ${retriedDuringOutage} retried meanwhile, from stop to back), none after it was back; replayed by hand, all delivered once (consumer ${consumer.amqpConnects} connections, ${o.duplicatesAbsorbed} duplicates absorbed)`;
              },
            });
          },
        ),
    );
  }
});
