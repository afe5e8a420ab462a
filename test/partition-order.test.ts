import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import { partitionSet } from '../src/consumer/partition-set.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { NodeChild } from './support/child-process.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const CHILD = fileURLToPath(new URL('./support/partition-consumer-child.js', import.meta.url));

interface EffectRow {
  id: string;
  key: string;
  seq: number;
  pid: number;
}

interface ChildStats {
  redelivered: number;
  handled: number;
  handOvers: number;
}

describe('partitions: per-key order across processes', () => {
  let t: TestDatabase;
  let publisher: amqp.ChannelModel;
  let channel: amqp.ConfirmChannel;
  const children: NodeChild[] = [];
  const consumers: string[] = [];
  const partitions = 4;

  before(async () => {
    t = await testDatabase('pord');
    publisher = await amqp.connect(AMQP_URL);
    publisher.on('error', () => {});
    channel = await publisher.createConfirmChannel();
    channel.on('error', () => {});
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill();
      await child.exited().catch(() => {});
    }
  });

  after(async () => {
    for (const consumer of consumers) {
      const set = partitionSet(consumer, partitions);
      for (const q of [...set.queues, `${consumer}.dlq`]) {
        await channel.deleteQueue(q).catch(() => {});
      }
      for (const e of [set.exchange, `${consumer}.events`]) {
        await channel.deleteExchange(e).catch(() => {});
      }
    }
    await publisher.close().catch(() => {});
    await t.close();
  });

  /** A consumer of its own for one test, with an effects table. */
  const newConsumer = async () => {
    const consumer = uniqueName('pord');
    consumers.push(consumer);
    await t.pool.query(`CREATE TABLE "${t.schema}"."${consumer}" (
      id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, pid int NOT NULL)`);
    return consumer;
  };

  const startProcess = async (consumer: string, queueType: 'classic' | 'quorum' = 'classic') => {
    const child = new NodeChild(CHILD, [], {
      ...process.env,
      DATABASE_URL,
      AMQP_URL,
      OKT_SCHEMA: t.schema,
      OKT_TABLE: consumer,
      OKT_CONSUMER: consumer,
      OKT_EXCHANGE: `${consumer}.events`,
      OKT_PARTITIONS: String(partitions),
      OKT_HANDLER_MS: '3',
      OKT_REBALANCE_MS: '300',
      OKT_QUEUE_TYPE: queueType,
    });
    children.push(child);
    await waitFor('a consumer process started', () => {
      if (!child.running) throw new Error(`a consumer process exited:\n${child.stderr}`);
      return child.stdout.includes('started');
    });
    return child;
  };

  /** `perKey` messages for each of `keys` keys, interleaved, seq ascending per key. */
  const publishKeyed = async (consumer: string, keys: number, perKey: number) => {
    for (let seq = 0; seq < perKey; seq += 1) {
      for (let k = 0; k < keys; k += 1) {
        channel.publish(
          `${consumer}.events`,
          'order.changed',
          Buffer.from(JSON.stringify({ key: `k${k}`, seq })),
          {
            contentType: 'application/json',
            persistent: true,
            messageId: `k${k}-${seq}`,
            headers: { [ORDERING_KEY_HEADER]: `k${k}` },
          },
        );
      }
    }
    await channel.waitForConfirms();
  };

  const count = (consumer: string) => t.count(consumer);
  /** What the processes logged (warnings and errors), for a failure's message. */
  const logs = () =>
    children
      .map((c, i) => `--- process ${i} (pid ${c.child.pid}):\n${c.stderr.slice(-2000)}`)
      .join('\n');
  const effects = async (consumer: string) =>
    (
      await t.pool.query<EffectRow>(
        `SELECT id, key, seq, pid FROM "${t.schema}"."${consumer}" ORDER BY id`,
      )
    ).rows;

  /** Every message applied once, each key's in publish order; returns the rows. */
  const assertOnceInOrder = async (consumer: string, keys: number, perKey: number) => {
    await waitFor(
      'every message handled',
      async () => (await count(consumer)) >= keys * perKey,
      90_000,
    ).catch(async (error: Error) => {
      throw new Error(`${error.message}: ${await count(consumer)} handled\n${logs()}`);
    });
    // Nothing more trickles in: a duplicate would show as an extra row.
    await waitFor('no more effects', async () => {
      const n = await count(consumer);
      await new Promise((resolve) => setTimeout(resolve, 300));
      return n === (await count(consumer));
    });
    const rows = await effects(consumer);
    assert.equal(rows.length, keys * perKey, 'every message applied exactly once');
    const order = new Map<string, number[]>();
    for (const r of rows) order.set(r.key, [...(order.get(r.key) ?? []), r.seq]);
    assert.equal(order.size, keys);
    const expected = Array.from({ length: perKey }, (_, i) => i);
    for (const [key, seqs] of order) assert.deepEqual(seqs, expected, `order of ${key}`);
    return rows;
  };

  /** SIGTERM every process still running; their totals, summed. */
  const stopAll = async (processes: NodeChild[]) => {
    const totals: ChildStats = { redelivered: 0, handled: 0, handOvers: 0 };
    for (const p of processes.filter((c) => c.running)) {
      assert.deepEqual(await p.stop(), { code: 0, signal: null }, p.stderr);
      const line = /^stats (.*)$/m.exec(p.stdout);
      assert.ok(line, `a process printed no stats:\n${p.stdout}\n${p.stderr}`);
      const stats = JSON.parse(line[1]!) as ChildStats;
      totals.redelivered += stats.redelivered;
      totals.handled += stats.handled;
      totals.handOvers += stats.handOvers;
    }
    return totals;
  };

  it('applies every message once and in key order when one of 3 processes is killed -9', async () => {
    const consumer = await newConsumer();
    const processes = [
      await startProcess(consumer),
      await startProcess(consumer),
      await startProcess(consumer),
    ];
    const keys = 40;
    const perKey = 50;
    await publishKeyed(consumer, keys, perKey);

    // Mid-stream: kill -9 the process that has handled the most so far.
    await waitFor('a quarter handled', async () => (await count(consumer)) >= (keys * perKey) / 4);
    const before = await effects(consumer);
    const byPid = new Map<number, number>();
    for (const e of before) byPid.set(e.pid, (byPid.get(e.pid) ?? 0) + 1);
    const victimPid = [...byPid].sort((a, b) => b[1] - a[1])[0]![0];
    const victim = processes.find((p) => p.child.pid === victimPid)!;
    const lastIdBeforeKill = Number(before.at(-1)!.id);
    victim.kill();
    assert.equal((await victim.exited()).signal, 'SIGKILL');

    const rows = await assertOnceInOrder(consumer, keys, perKey);
    assert.ok(lastIdBeforeKill < rows.length, 'the kill came mid-stream');
    // The victim's partitions moved: keys it handled before the kill were finished by survivors.
    const victimKeys = new Set(
      rows.filter((r) => Number(r.id) <= lastIdBeforeKill && r.pid === victimPid).map((r) => r.key),
    );
    assert.ok(victimKeys.size > 0, 'the victim was active on a partition');
    const moved = [...victimKeys].filter((key) =>
      rows.some((r) => r.key === key && Number(r.id) > lastIdBeforeKill && r.pid !== victimPid),
    );
    assert.ok(moved.length > 0, 'a partition of the victim moved to a survivor');

    const totals = await stopAll(processes);
    // The victim's unacked deliveries came back to the survivors.
    assert.ok(totals.redelivered > 0, "the survivors received the victim's deliveries again");
  });

  // A quorum queue (the default type) with single active consumer reports only its active
  // consumer in its consumer count: counted there, the processes were always 1, and nothing was
  // ever handed over.
  for (const queueType of ['classic', 'quorum'] as const) {
    it(`spreads the partitions over processes started one after another, keeping order (${queueType})`, async () => {
      const consumer = await newConsumer();
      // The first process subscribes alone: single active consumer makes it active everywhere.
      const first = await startProcess(consumer, queueType);
      const others = [
        await startProcess(consumer, queueType),
        await startProcess(consumer, queueType),
      ];
      const keys = 40;
      const perKey = 60;
      await publishKeyed(consumer, keys, perKey);

      const rows = await assertOnceInOrder(consumer, keys, perKey);
      const pids = new Set(rows.map((r) => r.pid));
      assert.ok(pids.size >= 2, `the work was shared by ${pids.size} processes\n${logs()}`);
      assert.ok(
        rows.some((r) => r.pid === first.child.pid),
        'the first process kept a share',
      );
      const totals = await stopAll([first, ...others]);
      assert.ok(totals.handOvers > 0, `partitions were handed over\n${logs()}`);
    });
  }
});
