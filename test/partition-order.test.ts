import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as amqp from 'amqplib';
import { topologyOf } from '../src/consumer/consumer-topology.js';
import { partitionSet } from '../src/consumer/partition-set.js';
import { ORDERING_KEY_HEADER } from '../src/protocol/message-headers.js';
import { NodeChild } from './support/child-process.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const CHILD = fileURLToPath(new URL('./support/partition-consumer-child.js', import.meta.url));

interface EffectRow {
  key: string;
  seq: number;
  pid: number;
}

describe('partitions: per-key order across processes', () => {
  let t: TestDatabase;
  let publisher: amqp.ChannelModel;
  let channel: amqp.ConfirmChannel;
  const children: NodeChild[] = [];
  const consumer = uniqueName('pord');
  const exchange = `${consumer}.events`;
  const partitions = 4;

  before(async () => {
    t = await testDatabase('pord');
    await t.pool.query(`CREATE TABLE "${t.schema}".effects (
      id bigserial PRIMARY KEY, key text NOT NULL, seq int NOT NULL, pid int NOT NULL)`);
    publisher = await amqp.connect(AMQP_URL);
    publisher.on('error', () => {});
    channel = await publisher.createConfirmChannel();
    channel.on('error', () => {});
  });

  after(async () => {
    for (const child of children) child.kill();
    await Promise.all(children.map((c) => c.exited().catch(() => {})));
    const set = partitionSet(consumer, partitions);
    for (const q of [...set.queues, `${consumer}.dlq`])
      await channel.deleteQueue(q).catch(() => {});
    for (const e of [set.exchange, exchange]) await channel.deleteExchange(e).catch(() => {});
    await publisher.close().catch(() => {});
    await t.close();
  });

  const spawnConsumer = () => {
    const child = new NodeChild(CHILD, [], {
      ...process.env,
      DATABASE_URL,
      AMQP_URL,
      OKT_SCHEMA: t.schema,
      OKT_CONSUMER: consumer,
      OKT_EXCHANGE: exchange,
      OKT_PARTITIONS: String(partitions),
      OKT_HANDLER_MS: '3',
    });
    children.push(child);
    return child;
  };

  const effects = async () =>
    (await t.pool.query<EffectRow>(`SELECT key, seq, pid FROM "${t.schema}".effects ORDER BY id`))
      .rows;

  it('applies every message once and in key order when one of 3 processes is killed -9', async () => {
    const processes = [spawnConsumer(), spawnConsumer(), spawnConsumer()];
    for (const p of processes) {
      await waitFor('a consumer process started', () => {
        if (!p.running) throw new Error(`a consumer process exited:\n${p.stderr}`);
        return p.stdout.includes('started');
      });
    }
    // The topology is declared: the partition queues exist and are bound.
    assert.deepEqual(
      topologyOf({
        name: consumer,
        exchange,
        ordered: true,
        partitions,
        handler: async () => {},
      }).partitions?.queues,
      partitionSet(consumer, partitions).queues,
    );

    const keys = 40;
    const perKey = 50;
    for (let seq = 0; seq < perKey; seq += 1) {
      for (let k = 0; k < keys; k += 1) {
        channel.publish(
          exchange,
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
    const total = keys * perKey;

    // Mid-stream: kill -9 the process that has handled the most so far.
    await waitFor('a quarter handled', async () => (await t.count('effects')) >= total / 4, 60_000);
    const before = await effects();
    const byPid = new Map<number, number>();
    for (const e of before) byPid.set(e.pid, (byPid.get(e.pid) ?? 0) + 1);
    const victimPid = [...byPid].sort((a, b) => b[1] - a[1])[0]![0];
    const victim = processes.find((p) => p.child.pid === victimPid)!;
    const handledBeforeKill = await t.count('effects');
    victim.kill();
    const outcome = await victim.exited();
    assert.equal(outcome.signal, 'SIGKILL');
    assert.ok(handledBeforeKill < total, 'the kill came mid-stream');

    await waitFor('every message handled', async () => (await t.count('effects')) >= total, 60_000);
    // Nothing more trickles in: a duplicate would show as an extra row.
    await waitFor('the survivors idle', async () => {
      const n = await t.count('effects');
      await new Promise((resolve) => setTimeout(resolve, 300));
      return n === (await t.count('effects'));
    });

    const rows = await effects();
    assert.equal(rows.length, total, 'every message applied exactly once');
    const order = new Map<string, number[]>();
    for (const r of rows) order.set(r.key, [...(order.get(r.key) ?? []), r.seq]);
    assert.equal(order.size, keys);
    const expected = Array.from({ length: perKey }, (_, i) => i);
    for (const [key, seqs] of order) assert.deepEqual(seqs, expected, `order of ${key}`);

    // The victim's partitions moved: keys it handled were finished by a survivor.
    const victimKeys = new Set(rows.filter((r) => r.pid === victimPid).map((r) => r.key));
    assert.ok(victimKeys.size > 0, 'the victim was active on a partition');
    const movedKeys = [...victimKeys].filter((key) =>
      rows.some((r) => r.key === key && r.pid !== victimPid),
    );
    assert.ok(movedKeys.length > 0, 'a partition of the victim moved to a survivor');
    for (const key of movedKeys) {
      const pids = rows.filter((r) => r.key === key).map((r) => r.pid);
      const handOver = pids.findIndex((pid) => pid !== victimPid);
      assert.ok(
        pids.slice(handOver).every((pid) => pid !== victimPid),
        `${key} went from the victim to a survivor once, and never back`,
      );
    }

    // The victim's unacked deliveries came back to the survivors, who found them handled or not.
    let redelivered = 0;
    for (const p of processes.filter((c) => c.running)) {
      assert.deepEqual(await p.stop(), { code: 0, signal: null });
      const stats = JSON.parse(/^stats (.*)$/m.exec(p.stdout)![1]!) as { redelivered: number };
      redelivered += stats.redelivered;
    }
    assert.ok(redelivered > 0, "the survivors received the victim's unacked deliveries again");
  });
});
