import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { payloadOf, TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/** The compiled CLI, as `npx outboxkit` runs it: dist/test/ sits beside dist/src/. */
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const ENV: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL, AMQP_URL };

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function cli(...args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      env: ENV,
      timeout: 30_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('outboxkit dead-letters', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('cli_dl');
    broker = await TestBroker.open();
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db.transaction().execute((trx) =>
      writer.addMany(trx, [
        { exchange: 'alpha', routingKey: 'a', payload: { n: 1 }, messageId: 'x-1' },
        { exchange: 'alpha', routingKey: 'a', payload: { n: 2 }, messageId: 'x-2' },
        { exchange: 'beta', routingKey: 'b', payload: { n: 3 }, messageId: 'x-3' },
      ]),
    );
    // Parked as the relay parks: moved with a reason, the exchange's name in it.
    await parkOutboxRows(t, {
      sql: `CASE exchange WHEN 'alpha' THEN 'exchange not found' ELSE 'too large' END`,
    });
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('lists, shows, replays by filter and purges parked rows', async () => {
    const list = await cli('dead-letters', 'list', '--schema', t.schema, '--json');
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as Array<{ id: string; messageId: string }>;
    assert.deepEqual(
      rows.map((r) => r.messageId),
      ['x-1', 'x-2', 'x-3'],
    );

    const table = await cli('dead-letters', 'list', '--schema', t.schema, '--limit', '1');
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^ID\s+MESSAGE ID\s+PARKED\s+EXCHANGE/m);
    assert.match(table.stdout, /1 shown of 3 match/);

    const show = await cli('dead-letters', 'show', rows[0]!.id, '--schema', t.schema);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /reason: exchange not found/);
    assert.match(show.stdout, /payload:\n\{"n":1\}/);

    const replay = await cli(
      'dead-letters',
      'replay',
      '--schema',
      t.schema,
      '--exchange',
      'alpha',
      '--reason',
      'NOT FOUND',
    );
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /Replayed 2 parked rows of schema "[a-z0-9_]+"\./);
    const { rows: outbox } = await t.pool.query(
      `SELECT message_id, attempts FROM "${t.schema}".outbox ORDER BY id`,
    );
    assert.deepEqual(outbox, [
      { message_id: 'x-1', attempts: 0 },
      { message_id: 'x-2', attempts: 0 },
    ]);

    const purge = await cli('dead-letters', 'purge', '--all', '--schema', t.schema, '--json');
    assert.equal(purge.code, 0, purge.stderr);
    assert.deepEqual(JSON.parse(purge.stdout), { done: 1, failed: [] });
    assert.equal(await t.count('outbox_parked'), 0);

    const missing = await cli('dead-letters', 'show', rows[0]!.id, '--schema', t.schema);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No dead letter "\d+"/);
  });

  it('refuses a replay that names nothing, and ages without a unit', async () => {
    const bare = await cli('dead-letters', 'replay', '--schema', t.schema);
    assert.equal(bare.code, 2);
    assert.match(bare.stderr, /replay needs an id, filters, or --all/);
    const age = await cli('dead-letters', 'list', '--older-than', '7', '--schema', t.schema);
    assert.equal(age.code, 2);
    assert.match(age.stderr, /--older-than must be an age with a unit/);
  });

  it('refuses an empty filter flag, which would match every dead letter', async () => {
    const empty = await cli('dead-letters', 'purge', '--reason', '', '--schema', t.schema);
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /--reason must not be empty/);
    const id = await cli('dead-letters', 'replay', '--message-id', '', '--queue', 'q');
    assert.equal(id.code, 2);
    assert.match(id.stderr, /--message-id must not be empty/);
  });

  it('says more may be listed only when --limit was reached, not when the queue holds others', async () => {
    const queue = await broker.queue('footer');
    const dlq = await broker.queue('footer.dlq');
    const reasons = [
      'permanent-error',
      'retries-exhausted',
      'permanent-error',
      'retries-exhausted',
    ];
    reasons.forEach((reason, i) => {
      broker.channel.sendToQueue(dlq, Buffer.from('{}'), {
        messageId: `f-${i}`,
        headers: { [OUTBOXKIT_HEADERS.reason]: reason },
      });
    });
    await broker.waitForDepth(dlq, 4);

    const matching = await cli('dead-letters', 'list', '--queue', queue, '--reason', 'permanent');
    assert.equal(matching.code, 0, matching.stderr);
    assert.equal(matching.stdout.match(/^f-\d/gm)?.length, 2);
    assert.doesNotMatch(matching.stdout, /shown|--limit/);

    const limited = await cli('dead-letters', 'list', '--queue', queue, '--limit', '1');
    assert.equal(limited.code, 0, limited.stderr);
    assert.match(
      limited.stdout,
      /\(1 shown, the --limit; 4 in the queue, matching or not; raise --limit to see more\)/,
    );

    const all = await cli('dead-letters', 'list', '--queue', queue, '--limit', '4');
    assert.doesNotMatch(all.stdout, /shown|--limit/);
    await broker.drain(dlq);
  });

  it("replays a queued dead letter back to its consumer's queue, confirmed", async () => {
    const queue = await broker.queue('consumer');
    const dlq = await broker.queue('consumer.dlq');
    broker.channel.sendToQueue(dlq, Buffer.from('{"a":1}'), {
      messageId: 'q-1',
      contentType: 'application/json',
      headers: {
        [OUTBOXKIT_HEADERS.reason]: 'retries-exhausted',
        [OUTBOXKIT_HEADERS.error]: 'db down',
        [OUTBOXKIT_HEADERS.attempts]: 10,
        [OUTBOXKIT_HEADERS.failedAt]: new Date().toISOString(),
        [OUTBOXKIT_HEADERS.originalExchange]: 'orders',
        [OUTBOXKIT_HEADERS.originalRoutingKey]: 'order.placed',
      },
    });
    await broker.waitForDepth(dlq, 1);

    const list = await cli('dead-letters', 'list', '--queue', queue, '--json');
    assert.equal(list.code, 0, list.stderr);
    const [dead] = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
    assert.equal(dead!.messageId, 'q-1');
    assert.equal(dead!.reason, 'retries-exhausted');
    assert.equal(dead!.exchange, 'orders');
    assert.equal(await broker.depth(dlq), 1);

    const replay = await cli('dead-letters', 'replay', 'q-1', '--queue', queue);
    assert.equal(replay.code, 0, replay.stderr);
    assert.match(replay.stdout, /Replayed 1 dead letter\./);
    // Nothing consumes the queue (its consumer renamed or stopped): the copy waits there.
    assert.match(replay.stderr, /has no consumer now: .* replay with --to exchange/);
    await broker.waitForDepth(queue, 1);
    const [copy] = await broker.drain(queue);
    assert.equal(copy!.properties.messageId, 'q-1');
    assert.deepEqual(payloadOf(copy!), { a: 1 });
    assert.equal(copy!.properties.headers?.[OUTBOXKIT_HEADERS.reason], undefined);
    assert.equal(copy!.properties.headers?.[OUTBOXKIT_HEADERS.originalExchange], 'orders');
    assert.equal(await broker.depth(dlq), 0);

    // With its consumer running, no warning.
    broker.channel.sendToQueue(dlq, Buffer.from('{"a":2}'), { messageId: 'q-2' });
    await broker.waitForDepth(dlq, 1);
    const consumer = await broker.channel.consume(queue, () => {}, { noAck: true });
    try {
      const served = await cli('dead-letters', 'replay', 'q-2', '--queue', queue);
      assert.equal(served.code, 0, served.stderr);
      assert.doesNotMatch(served.stderr, /no consumer/);
    } finally {
      await broker.channel.cancel(consumer.consumerTag);
    }
  });

  it('waits --busy-timeout for a dead-letter queue another reader holds, then fails typed', async () => {
    const queue = await broker.queue('held');
    const dlq = await broker.queue('held.dlq');
    broker.channel.sendToQueue(dlq, Buffer.from('{}'), { messageId: 'h-1' });
    await broker.waitForDepth(dlq, 1);
    // Another reader's scan: an exclusive consumer holding the dead letters unacked.
    const held = await broker.channel.consume(dlq, () => {}, { exclusive: true, noAck: false });
    try {
      const started = performance.now();
      const busy = await cli('dead-letters', 'list', '--queue', queue, '--busy-timeout', '300ms');
      const took = performance.now() - started;
      assert.equal(busy.code, 1, busy.stderr);
      assert.match(busy.stderr, /was being read by another reader .* for \d+ ms/);
      assert.match(busy.stderr, /--busy-timeout/);
      // Node's start and the connection, but not the default 5 s wait.
      assert.ok(took < 4500, `took ${Math.round(took)} ms`);
    } finally {
      await broker.channel.cancel(held.consumerTag);
    }
    const bad = await cli('dead-letters', 'list', '--queue', queue, '--busy-timeout', 'soon');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--busy-timeout must be a duration/);
    const parked = await cli('dead-letters', 'list', '--publish-timeout', '5s');
    assert.equal(parked.code, 2);
    assert.match(parked.stderr, /--publish-timeout applies to --queue dead letters only/);
  });
});
