import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { AMQP_URL } from '../support/env.js';
import { waitFor } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import type { FaultScenario } from './fault-scenario.js';
import { runScenario } from './fault-scenario.js';
import { PrivatePostgres } from './private-postgres.js';
import type { RelayProcess } from './relay-handles.js';

// Postgres is the fault here: a private cluster that is restarted, crashed and has its sessions
// terminated, under the business, the relay and the consumer at once. RabbitMQ is the machine's.

/** Terminates sessions of the scenario matching `where` from a connection of its own. */
async function terminate(
  cluster: PrivatePostgres,
  sc: FaultScenario,
  where: string,
): Promise<number> {
  const client = new pg.Client({ connectionString: cluster.url('okf_killer') });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
       WHERE application_name LIKE $1 AND pid <> pg_backend_pid() AND (${where})`,
      [`okf_${sc.sid}_%`],
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}

describe('faults: Postgres', () => {
  let cluster: PrivatePostgres;
  const databaseUrl = (applicationName: string) => cluster.url(applicationName);
  before(async () => {
    await reapLeftovers();
    cluster = await PrivatePostgres.start();
  });
  after(async () => {
    await cluster?.destroy();
    printResults('Fault suite: Postgres');
  });

  for (const mode of ['fast', 'immediate'] as const) {
    const name =
      mode === 'fast'
        ? 'Postgres restarted (fast) mid-stream'
        : 'Postgres crashed (immediate) and recovered';
    it(name, { timeout: 120_000 }, () =>
      runScenario(
        // A crash must lose nothing that was acknowledged: commits wait for the WAL here.
        { name, databaseUrl, amqpUrl: AMQP_URL, asyncCommit: false },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          sc.traffic({ total: 1000, pauseMs: 5, perTransaction: 10 });
          await sc.waitForEffects(200);
          await cluster.restart(mode);
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              assert.ok(o.relays.listenConnects >= 2, 'the relay did not LISTEN again');
              return `relay: ${o.relays.errors} failed batches, LISTEN ${o.relays.listenConnects}x; consumer: ${o.consumer.databaseRetries} transactions retried`;
            },
          });
        },
      ),
    );
  }

  it(
    'every session of the relay, the consumer and the business terminated',
    { timeout: 90_000 },
    () =>
      runScenario(
        {
          name: 'Postgres backends terminated',
          databaseUrl,
          amqpUrl: AMQP_URL,
          asyncCommit: false,
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          sc.traffic({ total: 1000, pauseMs: 5, perTransaction: 10 });
          await sc.waitForEffects(200);
          const killed = await terminate(cluster, sc, 'true');
          sc.healed();
          await sc.finish({
            evidence: (o) => {
              assert.ok(killed >= 3, `only ${killed} sessions terminated`);
              assert.ok(o.relays.listenConnects >= 2, 'the relay did not LISTEN again');
              return `${killed} sessions terminated; relay LISTEN ${o.relays.listenConnects}x, ${o.relays.errors} failed batches`;
            },
          });
        },
      ),
  );

  it(
    'a restart burst (immediate, sessions terminated, fast) while relay processes restart',
    { timeout: 90_000 },
    () =>
      runScenario(
        {
          name: 'Postgres restart burst, relay processes restarted',
          databaseUrl,
          amqpUrl: AMQP_URL,
          asyncCommit: false,
        },
        async (sc) => {
          // Relays as processes, so that an unhandled 'error' on a pg client would end one.
          await sc.startConsumer();
          const relays: RelayProcess[] = [await sc.spawnRelay(), await sc.spawnRelay()];
          sc.traffic({ total: 600, pauseMs: 5, perTransaction: 10 });
          await sc.waitForEffects(100);
          // The soak's sequence, a second apart: a crash, a relay restarted into the recovery
          // (its LISTEN fails while the database starts up), every session terminated, then a
          // fast shutdown with another relay restarted into it.
          await relays[0]!.kill();
          await cluster.stop('immediate');
          relays.push(await sc.spawnRelay());
          await cluster.boot();
          await sleep(1000);
          const killed = await terminate(cluster, sc, 'true');
          await sleep(1000);
          await relays[1]!.kill();
          await cluster.stop('fast');
          relays.push(await sc.spawnRelay());
          await cluster.boot();
          sc.healed();
          const crashed = () => relays.filter((r) => r.crashed).map((r) => r.name);
          await sc.finish({
            evidence: (o) => {
              assert.deepEqual(crashed(), [], 'relay processes died on their own');
              assert.ok(killed >= 1, 'no session was terminated');
              assert.ok(o.relays.listenConnects >= relays.length + 1, 'no LISTEN was made again');
              return `${relays.length} relay processes (2 restarted into the burst), none died; ${killed} sessions terminated; LISTEN ${o.relays.listenConnects}x`;
            },
          });
        },
      ),
  );

  it('the LISTEN connection killed: new commits still wake the relay', { timeout: 90_000 }, () =>
    runScenario(
      // A poll this slow would miss the drain bound: only a LISTEN made again can wake the relay.
      {
        name: 'LISTEN connection killed (poll 60 s)',
        databaseUrl,
        amqpUrl: AMQP_URL,
        drainBoundMs: 10_000,
      },
      async (sc) => {
        await sc.startConsumer();
        const relay = await sc.startRelay({ pollIntervalMs: 60_000 });
        await waitFor('the relay listening', () => relay.counts().listenConnects >= 1, 10_000);
        const killed = await terminate(
          cluster,
          sc,
          `application_name = '${relay.applicationName}' AND query LIKE 'LISTEN%'`,
        );
        await waitFor('LISTEN made again', () => relay.counts().listenConnects >= 2, 10_000);
        sc.healed();
        await sc.traffic({ total: 500, pauseMs: 10, perTransaction: 10 }).done;
        await sc.finish({
          evidence: (o) => {
            assert.equal(killed, 1, 'the LISTEN session was not found');
            return `LISTEN session terminated, made again (${o.relays.listenConnects}x); commits after it woke the relay`;
          },
        });
      },
    ),
  );
});
