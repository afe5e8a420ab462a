import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AMQP_URL, DATABASE_URL } from '../support/env.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import { type FaultScenario, runScenario, withApplicationName } from './fault-scenario.js';
import type { RelayProcess } from './relay-handles.js';

// The relay process is the fault here: `outboxkit relay` runs as a child and is SIGKILLed at
// chosen points and at random. Postgres and RabbitMQ are the machine's, undisturbed.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);
const broker = new URL(AMQP_URL);

/** Outbox rows whose message the consumer already applied: published, not yet deleted. */
async function publishedButKept(sc: FaultScenario): Promise<number> {
  const { rows } = await sc.appPool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${sc.tables.outbox} o
     WHERE EXISTS (SELECT 1 FROM ${sc.table('effects')} e WHERE e.msg_id = o.message_id)`,
  );
  return rows[0]!.n;
}

/** Waits until the relay is inside a claim transaction, then SIGKILLs it; false if it never was. */
async function killMidBatch(sc: FaultScenario, relay: RelayProcess): Promise<boolean> {
  const inBatch = await waitFor(
    'the relay in a batch',
    () => sc.inTransaction(relay),
    3000,
    5,
  ).then(
    () => true,
    () => false,
  );
  await relay.kill();
  return inBatch;
}

describe('faults: the relay process', () => {
  before(async () => {
    await reapLeftovers();
  });
  after(() => {
    printResults('Fault suite: the relay process');
  });

  it('SIGKILL after publishing, before the confirm', { timeout: 90_000 }, async () => {
    const link = await TcpProxy.start(broker.hostname, Number(broker.port || 5672));
    try {
      await runScenario(
        { name: 'relay SIGKILLed after publish, before confirm', databaseUrl, amqpUrl: AMQP_URL },
        async (sc) => {
          await sc.startConsumer();
          const first = await sc.spawnRelay({ amqpUrl: link.url(AMQP_URL) });
          sc.mark('relay spawned');
          sc.traffic({ total: 1000, pauseMs: 5 });
          await sc.waitForEffects(200);
          sc.mark('200 effects');
          // Confirms stop reaching the relay; its publishes still reach the broker and the consumer.
          link.drop('toClient');
          await waitFor(
            'messages applied whose confirm is lost',
            async () => (await publishedButKept(sc)) >= 20,
            1500,
            10,
          ).catch(() => {});
          const kept = await publishedButKept(sc);
          sc.mark('kept counted');
          // Before the relay's own heartbeat check (2 s) gives up on the link.
          await first.kill();
          sc.mark('killed');
          link.heal();
          await sc.spawnRelay();
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              assert.ok(kept > 0, 'no message was published without its confirm at the kill');
              assert.ok(
                o.duplicatesAbsorbed >= kept,
                `${o.duplicatesAbsorbed} absorbed, ${kept} expected`,
              );
              return `killed with ${kept} rows published but unconfirmed; published again, ${o.duplicatesAbsorbed} duplicates absorbed`;
            },
          });
        },
      );
    } finally {
      await link.close();
    }
  });

  it('SIGKILL after the confirm, before the delete commits', { timeout: 90_000 }, () =>
    runScenario(
      { name: 'relay SIGKILLed after confirm, before delete', databaseUrl, amqpUrl: AMQP_URL },
      async (sc) => {
        await sc.startConsumer();
        await sc.traffic({ total: 600 }).done;
        // A SHARE lock on the outbox lets the relay claim (ROW SHARE) and publish, but holds its
        // DELETE (ROW EXCLUSIVE) after the confirms came: the window this kill aims at.
        const lock = await sc.appPool.connect();
        let kept = 0;
        try {
          await lock.query('BEGIN');
          await lock.query(`LOCK TABLE ${sc.tables.outbox} IN SHARE MODE`);
          const relay = await sc.spawnRelay();
          await waitFor(
            'the relay waiting to delete confirmed rows',
            async () => {
              const { rows } = await sc.appPool.query(
                `SELECT 1 FROM pg_stat_activity WHERE application_name = $1
                 AND wait_event_type = 'Lock' AND query LIKE 'DELETE%'`,
                [relay.applicationName],
              );
              return rows.length > 0 && (await publishedButKept(sc)) > 0;
            },
            10_000,
            10,
          );
          // Let the consumer apply most of the confirmed batch, so the kill strands many.
          await waitFor(
            'the batch applied',
            async () => (await publishedButKept(sc)) >= 50,
            5000,
            20,
          ).catch(() => {});
          kept = await publishedButKept(sc);
          await relay.kill();
        } finally {
          await lock.query('ROLLBACK').catch(() => {});
          lock.release();
        }
        await sc.spawnRelay();
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(kept > 0, 'no confirmed row was waiting for its delete');
            assert.ok(
              o.duplicatesAbsorbed >= kept,
              `${o.duplicatesAbsorbed} absorbed, ${kept} expected`,
            );
            return `killed with ${kept} confirmed rows not yet deleted; published again, ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
      },
    ),
  );

  it('SIGKILL at random moments, four times', { timeout: 90_000 }, () =>
    runScenario(
      { name: 'relay SIGKILLed at random, 4 times', databaseUrl, amqpUrl: AMQP_URL },
      async (sc) => {
        await sc.startConsumer();
        let relay = await sc.spawnRelay();
        sc.traffic({ total: 1500, pauseMs: 5 });
        await sc.waitForEffects(100);
        let midBatch = 0;
        for (let kill = 0; kill < 4; kill += 1) {
          await sleep(150 + Math.floor(Math.random() * 500));
          if (await killMidBatch(sc, relay)) midBatch += 1;
          relay = await sc.spawnRelay();
        }
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            assert.ok(midBatch > 0, 'no kill hit a batch in flight');
            return `4 kills, ${midBatch} inside a claimed batch; ${o.duplicatesAbsorbed} duplicates absorbed`;
          },
        });
      },
    ),
  );

  it('three relays on one outbox, one SIGKILLed mid-batch', { timeout: 90_000 }, () =>
    runScenario(
      { name: 'three relays, one SIGKILLed', databaseUrl, amqpUrl: AMQP_URL },
      async (sc) => {
        await sc.startConsumer();
        const relays: RelayProcess[] = [];
        for (let i = 0; i < 3; i += 1)
          relays.push(await sc.spawnRelay({ args: ['--concurrency', '2'] }));
        sc.traffic({ total: 1500, pauseMs: 5, keys: 40 });
        await sc.waitForEffects(300);
        const victim = relays[1]!;
        const midBatch = await killMidBatch(sc, victim);
        const survivorsAtKill = relays[0]!.counts().published + relays[2]!.counts().published;
        sc.healed();
        await sc.finish({
          evidence: (o) => {
            const [a, b, c] = o.perRelay;
            assert.ok(midBatch, 'the kill did not hit a batch in flight');
            assert.ok(a!.published + c!.published > survivorsAtKill, 'the survivors stopped');
            return `relays published ${a!.published}, ${b!.published} (killed mid-batch), ${c!.published}; per-key order held across them`;
          },
        });
      },
    ),
  );
});
