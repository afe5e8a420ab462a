import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DATABASE_URL } from '../support/env.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import { runScenario, withApplicationName } from './fault-scenario.js';
import { PrivateRabbitMq } from './private-rabbitmq.js';
import type { InProcessRelay } from './relay-handles.js';

// One hot key: every message of the ledger has the same ordering key, so the relay moves it in
// runs (keyRunSize rows a batch, one after another on one channel) while the broker dies or the
// relay's connection drops. The scenario's consumer is ordered: any message of the key applied
// after a later one counts as an order violation and fails the scenario.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);

/** Traffic of one key: large transactions, so that a backlog of the key builds up behind runs. */
const HOT_KEY_TRAFFIC = { total: 2000, keys: 1, perTransaction: 25, writers: 2, pauseMs: 5 };

/** Rows per batch: runs, not one row of the key per batch. */
function rowsPerBatch(relay: InProcessRelay): number {
  const { published, batches } = relay.relay.stats();
  return published / Math.max(1, batches);
}

describe('faults: a hot key', () => {
  let node: PrivateRabbitMq;
  before(async () => {
    await reapLeftovers();
    node = await PrivateRabbitMq.start();
  });
  after(async () => {
    await node?.destroy();
    printResults('Fault suite: a hot key');
  });

  it('broker killed (SIGKILL) in the middle of a run', { timeout: 60_000 }, () =>
    runScenario(
      {
        name: 'hot key: broker killed (kill -9) mid-run',
        databaseUrl,
        amqpUrl: node.url,
        brokerState: (queues) => node.queueState(queues),
        // Classic: see broker.test.ts on RabbitMQ 3.10's single-node quorum queue after a kill.
        queueType: 'classic',
      },
      async (sc) => {
        await sc.startConsumer();
        const relay = await sc.startRelay();
        sc.traffic(HOT_KEY_TRAFFIC);
        await sc.waitForEffects(400);
        await node.kill();
        await waitFor('outbox rows piling up', async () => (await sc.outboxCount()) > 100, 10_000);
        await node.boot();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(o.relays.amqpConnects >= 2, 'the relay did not reconnect');
            const perBatch = rowsPerBatch(relay);
            assert.ok(perBatch > 3, `${perBatch.toFixed(1)} rows per batch: no runs`);
            return `broker killed; relay reconnected (${o.relays.amqpConnects} connections); ${perBatch.toFixed(1)} rows of the key per batch`;
          },
        });
      },
    ),
  );

  it('relay connection reset in the middle of a run', { timeout: 60_000 }, async () => {
    const link = await TcpProxy.start('127.0.0.1', Number(new URL(node.url).port));
    try {
      await runScenario(
        {
          name: 'hot key: relay connection reset mid-run',
          databaseUrl,
          amqpUrl: node.url,
          brokerState: (queues) => node.queueState(queues),
          queueType: 'classic',
        },
        async (sc) => {
          await sc.startConsumer();
          const relay = await sc.startRelay({ amqpUrl: link.url(node.url) });
          sc.traffic(HOT_KEY_TRAFFIC);
          await sc.waitForEffects(300);
          link.resetAll();
          await sc.waitForEffects(900);
          link.resetAll();
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              assert.ok(link.accepted >= 3, `${link.accepted} relay connections: no reset`);
              assert.ok(o.relays.amqpConnects >= 3, 'the relay did not reconnect twice');
              const perBatch = rowsPerBatch(relay);
              assert.ok(perBatch > 3, `${perBatch.toFixed(1)} rows per batch: no runs`);
              return `two resets; relay reconnected (${link.accepted} connections); ${perBatch.toFixed(1)} rows of the key per batch`;
            },
          });
        },
      );
    } finally {
      await link.close();
    }
  });
});
