import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { DATABASE_URL } from '../support/env.js';
import { waitFor } from '../support/wait-for.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import { type FaultScenario, runScenario, withApplicationName } from './fault-scenario.js';
import type { PrivateRabbitMq } from './private-rabbitmq.js';
import { PrivateRabbitMqCluster } from './private-rabbitmq-cluster.js';
import type { InProcessRelay } from './relay-handles.js';

// The broker is a cluster of three private nodes here, and its nodes are the fault: killed,
// stopped and restarted while the ledger's messages flow through quorum queues replicated on all
// three. Relays and consumers get every node's URL, each list starting at another node, so they
// are spread over the cluster and fail over to the next node when theirs goes away.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);

/** Two relays and two consumers, the first of each on node1 (where the queue is declared), the others elsewhere. */
interface Clients {
  readonly relays: readonly InProcessRelay[];
  readonly consumers: readonly ConsumerHost[];
}

describe('faults: a three-node RabbitMQ cluster', () => {
  let cluster: PrivateRabbitMqCluster;
  before(async () => {
    await reapLeftovers();
    cluster = await PrivateRabbitMqCluster.start(3);
  });
  after(async () => {
    await cluster?.destroy();
    printResults('Fault suite: a three-node RabbitMQ cluster');
  });
  // A scenario that failed half-way may leave a node down: the next one starts whole.
  beforeEach(() => cluster?.healAll());

  const onCluster = (name: string) => ({
    name,
    databaseUrl,
    amqpUrl: cluster.urls,
    queueType: 'quorum' as const,
    brokerState: (queues: readonly string[]) => cluster.queueState(queues),
  });

  /**
   * Consumers first (the first declares the topology on node1, so its quorum queue's leader
   * starts there), then relays. Returns once the queue is replicated and online on all three.
   */
  async function startClients(sc: FaultScenario, relayNodes = [0, 2]): Promise<Clients> {
    const consumers = [
      await sc.startConsumer({ amqpUrl: cluster.urlsFrom(0) }),
      await sc.startConsumer({ amqpUrl: cluster.urlsFrom(1) }),
    ];
    const relays: InProcessRelay[] = [];
    for (const i of relayNodes) relays.push(await sc.startRelay({ amqpUrl: cluster.urlsFrom(i) }));
    await cluster.waitForHealthyQueues([sc.queues.main]);
    sc.mark('queue on 3 nodes');
    return { relays, consumers };
  }

  /** Waits for a leader of `queue` on another node than `old`; returns it and how long it took. */
  async function newLeader(
    queue: string,
    old: PrivateRabbitMq,
    since: number,
  ): Promise<{ leader: PrivateRabbitMq; afterMs: number }> {
    const leader = await waitFor(
      `a new leader for ${queue}`,
      async () => {
        const [state] = await cluster.quorumState([queue]);
        return state?.leader !== undefined && state.leader !== old.nodeName
          ? cluster.node(state.leader)
          : undefined;
      },
      60_000,
      100,
    );
    return { leader, afterMs: Date.now() - since };
  }

  const label = (node: PrivateRabbitMq) => cluster.label(node.nodeName);
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

  it(
    'the node leading the consumer queue is killed (kill -9), then restarted',
    {
      timeout: 120_000,
    },
    () =>
      runScenario(onCluster('cluster: queue leader killed (kill -9), restarted'), async (sc) => {
        const { relays, consumers } = await startClients(sc);
        const traffic = sc.traffic({ total: 5000, pauseMs: 10, perTransaction: 10 });
        await sc.waitForEffects(300);
        const leader = await cluster.leaderOf(sc.queues.main);
        const killedAt = Date.now();
        await leader.kill();
        sc.mark(`${label(leader)} killed`);
        const elected = await newLeader(sc.queues.main, leader, killedAt);
        sc.mark(`${label(elected.leader)} leads`);
        // The consumer that was on node1 consumes again through another node while node1, which
        // also holds the consumer's classic dead-letter queue, is still down.
        await waitFor(
          'both consumers on the queue through live nodes while node1 is down',
          async () =>
            (await cluster.consumerNodes(sc.queues.main)).filter((n) => n !== leader.nodeName)
              .length === 2,
          30_000,
          100,
        );
        const consumersBackMs = Date.now() - killedAt;
        sc.mark('consumers back');
        await leader.boot();
        sc.healed();
        traffic.stop();
        await cluster.waitForHealthyQueues([sc.queues.main]);
        const connects = (i: number) => relays[i]!.counts().amqpConnects;
        await sc.finish({
          evidence: (o) => {
            // Relay 1 and consumer 1 were on node1, which leads the queue it declared.
            assert.equal(
              label(leader),
              'node1',
              'the queue was not led by the node that declared it',
            );
            assert.ok(connects(0) >= 2, 'the relay on the killed node did not reconnect');
            assert.ok(consumers[0]!.amqpConnects >= 2, 'the consumer on it did not reconnect');
            assert.equal(connects(1), 1, 'the relay on another node lost its connection');
            return `leader ${label(leader)} killed, ${label(elected.leader)} elected within ${seconds(elected.afterMs)}, its consumer back on another node within ${seconds(consumersBackMs)}; ${label(leader)} rejoined as follower; relay and consumer on it reconnected (${connects(0)}, ${consumers[0]!.amqpConnects} connections); ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
      }),
  );

  it(
    'a node with a relay and a consumer on it is stopped (stop_app), then started',
    {
      timeout: 120_000,
    },
    () =>
      runScenario(onCluster('cluster: node stopped (stop_app), started'), async (sc) => {
        // Relay 1 and consumer 2 on node2, a follower of the queue.
        const { relays, consumers } = await startClients(sc, [1, 2]);
        const traffic = sc.traffic({ total: 5000, pauseMs: 10, perTransaction: 10 });
        await sc.waitForEffects(300);
        const node = cluster.nodes[1]!;
        const leaderBefore = await cluster.leaderOf(sc.queues.main);
        await cluster.stopApp(node);
        sc.mark(`${label(node)} stop_app`);
        // Both carry on through another node while this one is down.
        await waitFor(
          'the relay and the consumer on another node',
          () => relays[0]!.counts().amqpConnects >= 2 && consumers[1]!.amqpConnects >= 2,
          20_000,
        );
        const published = relays[0]!.counts().published;
        await waitFor(
          'the relay publishing through another node',
          () => relays[0]!.counts().published > published + 20,
          20_000,
        );
        await cluster.startApp(node);
        sc.healed();
        traffic.stop();
        await cluster.waitForHealthyQueues([sc.queues.main]);
        const leaderAfter = await cluster.leaderOf(sc.queues.main);
        await sc.finish({
          evidence: (o) => {
            const relayConnects = relays[0]!.counts().amqpConnects;
            assert.ok(relayConnects >= 2, 'the relay on the stopped node did not reconnect');
            assert.ok(consumers[1]!.amqpConnects >= 2, 'the consumer on it did not reconnect');
            assert.equal(
              consumers[0]!.amqpConnects,
              1,
              'the consumer on node1 lost its connection',
            );
            return `${label(node)} stopped: relay and consumer on it moved to another node (${relayConnects}, ${consumers[1]!.amqpConnects} connections) and published on meanwhile; leader ${label(leaderBefore)} before, ${label(leaderAfter)} after; ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
      }),
  );

  it(
    'two nodes of three killed (no majority), then one brought back',
    {
      timeout: 150_000,
    },
    () =>
      runScenario(onCluster('cluster: 2 of 3 nodes killed, 1 back'), async (sc) => {
        const { relays, consumers } = await startClients(sc);
        const traffic = sc.traffic({ total: 5000, pauseMs: 20, perTransaction: 10 });
        await sc.waitForEffects(300);
        // The leader (node1) and a follower: node3 is left alone with a copy of the log, and
        // the old leader is brought back from its disk.
        const leader = await cluster.leaderOf(sc.queues.main);
        const follower = cluster.nodes.find((n) => n !== leader && n !== cluster.nodes[2])!;
        await Promise.all([leader.kill(), follower.kill()]);
        sc.mark(`${label(leader)} and ${label(follower)} killed`);
        const published = () => relays.reduce((n, r) => n + r.counts().published, 0);
        // Batches in flight may still have been confirmed by the majority just before the kill.
        const retried = () => relays.reduce((n, r) => n + r.counts().retried, 0);
        await waitFor('unconfirmed rows retried', () => retried() > 0, 20_000);
        const atNoMajority = published();
        const held = await waitFor(
          'outbox rows piling up',
          async () => {
            const n = await sc.outboxCount();
            return n > 200 ? n : undefined;
          },
          30_000,
        );
        const publishedWithoutMajority = published() - atNoMajority;
        await leader.boot();
        sc.mark(`${label(leader)} back`);
        const backAt = Date.now();
        const elected = await waitFor(
          `a leader for ${sc.queues.main} with 2 of 3 nodes`,
          async () => (await cluster.quorumState([sc.queues.main]))[0]?.leader,
          // Each look is a rabbitmqctl call, seconds each on a loaded machine.
          60_000,
          100,
        );
        const electedMs = Date.now() - backAt;
        sc.healed();
        traffic.stop();
        await sc.finish({
          evidence: (o) => {
            assert.equal(publishedWithoutMajority, 0, 'rows confirmed without a majority');
            assert.ok(o.relays.retried > 0, 'no publish went unconfirmed');
            assert.ok(
              consumers.every((c) => c.amqpConnects >= 2),
              'a consumer kept its connection to a killed node',
            );
            return `no majority: ${held} rows held in the outbox, none confirmed, ${o.relays.retried} retries (nacks and timeouts); ${label(leader)} back, ${cluster.label(elected)} leads within ${seconds(electedMs)}; ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
        await follower.boot();
      }),
  );

  it(
    'two nodes of three killed (leader and follower), then the follower brought back',
    {
      timeout: 150_000,
    },
    () =>
      runScenario(onCluster('cluster: 2 of 3 killed, the follower back'), async (sc) => {
        const { relays, consumers } = await startClients(sc);
        const traffic = sc.traffic({ total: 5000, pauseMs: 20, perTransaction: 10 });
        await sc.waitForEffects(300);
        // As above, but the follower comes back, not the old leader: node3 and it elect a new
        // leader between them while the old leader stays down to the end.
        const leader = await cluster.leaderOf(sc.queues.main);
        const follower = cluster.nodes.find((n) => n !== leader && n !== cluster.nodes[2])!;
        await Promise.all([leader.kill(), follower.kill()]);
        sc.mark(`${label(leader)} and ${label(follower)} killed`);
        const published = () => relays.reduce((n, r) => n + r.counts().published, 0);
        const nacked = () =>
          relays.some((r) => r.logger.lines().some((l) => l.includes('nacked by the broker')));
        await waitFor('publishes nacked without a majority', nacked, 30_000);
        const atNoMajority = published();
        const held = await waitFor(
          'outbox rows piling up',
          async () => {
            const n = await sc.outboxCount();
            return n > 200 ? n : undefined;
          },
          30_000,
        );
        const publishedWithoutMajority = published() - atNoMajority;
        await follower.boot();
        sc.mark(`${label(follower)} back`);
        const backAt = Date.now();
        const elected = await newLeader(sc.queues.main, leader, backAt);
        sc.mark(`${label(elected.leader)} leads`);
        sc.healed();
        traffic.stop();
        await traffic.done;
        // The old leader's node also holds the consumer's classic dead-letter queue, which the
        // ledger check reads: the outbox must drain without it, before it comes back.
        await waitFor(
          'the outbox drained while the old leader is down',
          async () => (await sc.outboxCount()) === 0,
          30_000,
          250,
        );
        const drainedMs = Date.now() - backAt;
        sc.mark('outbox drained');
        await leader.boot();
        sc.mark(`${label(leader)} back`);
        const newChannels = relays.reduce(
          (n, r) => n + r.logger.count('confirm channel nacks every publish; opening a new one'),
          0,
        );
        await sc.finish({
          evidence: (o) => {
            assert.equal(publishedWithoutMajority, 0, 'rows confirmed without a majority');
            assert.ok(o.relays.retried > 0, 'no publish went unconfirmed');
            assert.ok(newChannels > 0, 'no channel was replaced after nacks');
            assert.ok(
              consumers.every((c) => c.amqpConnects >= 2),
              'a consumer kept its connection to a killed node',
            );
            return `no majority: ${held} rows held in the outbox, none confirmed, ${o.relays.retried} retries (nacks and timeouts); ${label(follower)} back, ${label(elected.leader)} leads within ${seconds(elected.afterMs)}; outbox drained ${seconds(drainedMs)} after ${label(follower)} was back, ${label(leader)} still down; ${newChannels} channels replaced after nacks; ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
      }),
  );

  it('a rolling restart of all three nodes while traffic flows', { timeout: 180_000 }, () =>
    runScenario(onCluster('cluster: rolling restart of 3 nodes'), async (sc) => {
      const { consumers } = await startClients(sc);
      const traffic = sc.traffic({ total: 100_000, pauseMs: 100, perTransaction: 5 });
      await sc.waitForEffects(100);
      const leaders: string[] = [label(await cluster.leaderOf(sc.queues.main))];
      const committedDuring: number[] = [];
      for (const node of cluster.nodes) {
        const before = traffic.committed();
        await node.stop();
        sc.mark(`${label(node)} stopped`);
        await node.boot();
        await cluster.waitForHealthyQueues([sc.queues.main]);
        sc.mark(`${label(node)} back`);
        committedDuring.push(traffic.committed() - before);
        leaders.push(label(await cluster.leaderOf(sc.queues.main)));
      }
      sc.healed();
      traffic.stop();
      await sc.finish({
        evidence: (o) => {
          assert.ok(
            committedDuring.every((n) => n > 0),
            `traffic stopped during a restart: ${committedDuring.join(', ')}`,
          );
          assert.ok(
            consumers.every((c) => c.amqpConnects >= 2),
            'a consumer kept its connection through the restart of every node',
          );
          return `each node stopped and started in turn (${committedDuring.join(', ')} messages committed meanwhile); leaders ${leaders.join(' > ')}; ${o.reconnects} reconnects; ${o.duplicatesAbsorbed} duplicates absorbed`;
        },
      });
    }),
  );
});
