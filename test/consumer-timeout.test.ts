import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, afterEach, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { sql } from 'kysely';
import type { PoolClient } from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { HandlerTimeoutError } from '../src/consumer/handler-timeout-error.js';
import { processedQueries } from '../src/consumer/processed-queries.js';
import { NotInTransactionError } from '../src/errors/not-in-transaction-error.js';
import { outboxTables } from '../src/sql/outbox-tables.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

/**
 * A timed-out handler's late write, refused: by its time-out while the ROLLBACK is on its way,
 * or, once the ROLLBACK is answered, as a write on a transaction that has ended (with Kysely
 * 0.29, whose executor refuses it first, also while it is on its way).
 */
const refusedLate = (late: unknown) =>
  late instanceof HandlerTimeoutError || late instanceof NotInTransactionError;

/** A handler stuck for good: it ignores its signal and never settles. */
const never = () => new Promise<void>(() => {});

describe('idempotent consumer: a handler that never settles', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('ctimeout');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  /**
   * Sessions left inside a transaction on this file's schema (their last statement names it:
   * other test files run beside this one on the same database), other than `except`.
   */
  const openTransactions = async (except?: number): Promise<number> => {
    const { rows } = await f.t.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND pid <> pg_backend_pid()
         AND xact_start IS NOT NULL AND pid IS DISTINCT FROM $1
         AND query LIKE '%' || $2 || '%'`,
      [except ?? null, f.t.schema],
    );
    return rows[0]!.n;
  };

  it('frees its slot, its key and its connection at the time-out; its retry succeeds', async () => {
    const name = f.name('stuck');
    let stuck = 0;
    const def = f.definition(
      'stuck',
      async (payload: { id: string }, ctx: ConsumeContext) => {
        await f.recordEffect(payload, ctx);
        if (payload.id === 'a' && ctx.attempt === 1) {
          stuck += 1;
          await never();
        }
      },
      // Long enough that the attempts meant to succeed never reach it on a loaded machine.
      { routingKeys: ['stuck'], timeoutMs: 1000, concurrency: 1 },
    );
    const host = await f.host([def]);
    const started = Date.now();
    await f.publish('stuck', { id: 'a' }, { messageId: 'stuck-a' });
    await f.publish('stuck', { id: 'b' }, { messageId: 'stuck-b' });
    // One slot: b runs only once a's stuck attempt gave it back; a's retry only once its key is free.
    await waitFor('both handled', () => host.stats(name).handled === 2, 10_000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 6000, `took ${elapsed} ms for a 1000 ms time-out`);
    assert.equal(stuck, 1, 'the first attempt never settles');
    const stats = host.stats(name);
    assert.equal(stats.timeouts, 1);
    assert.equal(stats.retried, 1);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(effects.map((e) => `${e.key}@${e.attempt}`).sort(), [
      'stuck-a@2',
      'stuck-b@1',
    ]);
    // The stuck handler still runs, but holds no connection and no transaction.
    assert.equal(await openTransactions(), 0);
    f.assertPoolIdle();
  });

  // The time-out left its listener on the host's stop-deadline signal, whose closure held the
  // delivery: every hung handler's message stayed in memory for the host's lifetime.
  it("lets go of a hung handler's message after its time-out", async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const name = f.name('hung');
    let payloadRef: WeakRef<object> | undefined;
    const def = f.definition(
      'hung',
      async (payload: object) => {
        payloadRef = new WeakRef(payload);
        await never();
      },
      { routingKeys: ['hung'], timeoutMs: 200, retry: { maxAttempts: 1 } },
    );
    const host = await f.host([def]);
    await f.publish('hung', { big: 'x'.repeat(1000) }, { messageId: 'hung-1' });
    await waitFor('the dead letter', () => host.stats(name).deadLettered === 1, 10_000);
    assert.ok(payloadRef !== undefined);
    await waitFor(
      'the payload collected',
      async () => {
        gc();
        await new Promise(setImmediate);
        return payloadRef!.deref() === undefined;
      },
      5000,
    );
  });

  // The writer runs its INSERT on the plugin-less view of `ctx.trx`, which went round the gate:
  // written right after the cancel, the row went in behind the ROLLBACK, on its own, and the
  // relay would have published a message of an attempt that rolled back.
  it("refuses the writer's late row of a timed-out handler, also while the ROLLBACK is on its way", async () => {
    const name = f.name('latewrite');
    const writer = new OutboxWriter({ schema: f.t.schema });
    let late: unknown;
    const def = f.definition(
      'latewrite',
      async (_payload, ctx: ConsumeContext) => {
        if (ctx.attempt > 1) return;
        // Cancelled at the time-out, by the host or by the transaction's own statement_timeout,
        // whichever comes first; the host's ROLLBACK follows its signal at once.
        await sql`SELECT pg_sleep(30)`.execute(ctx.trx).catch(() => {});
        if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
        late = await writer
          .add(ctx.trx, { exchange: 'x', routingKey: 'late', payload: { from: 'attempt 1' } })
          .then(
            () => 'written',
            (error: unknown) => error,
          );
      },
      { routingKeys: ['latewrite'], timeoutMs: 500 },
    );
    const host = await f.host([def]);
    await f.publish('latewrite', { n: 1 }, { messageId: 'latewrite-1' });
    await waitFor('the retry handled', () => host.stats(name).handled === 1, 20_000);
    await waitFor('the late row tried', () => late !== undefined);
    assert.ok(refusedLate(late), `refused, got ${String(late)}`);
    const { rows } = await f.t.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${f.t.schema}".outbox WHERE routing_key = 'late'`,
    );
    assert.equal(rows[0]!.n, 0);
  });

  // Once the ROLLBACK is answered, Kysely 0.29 refuses the transaction's statements itself
  // ("Transaction is already rolled back"), and the writer says that the handle's transaction
  // has ended: refused either way, and no row.
  it("refuses a timed-out handler's late row after the ROLLBACK is answered", async () => {
    const name = f.name('lateafter');
    const writer = new OutboxWriter({ schema: f.t.schema });
    let late: unknown;
    let retried!: () => void;
    const retryHandled = new Promise<void>((resolve) => {
      retried = resolve;
    });
    const def = f.definition(
      'lateafter',
      async (_payload, ctx: ConsumeContext) => {
        if (ctx.attempt > 1) return;
        if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
        // The retry ran in a transaction of its own: this attempt's was rolled back by then.
        await retryHandled;
        late = await writer
          .add(ctx.trx, { exchange: 'x', routingKey: 'lateafter', payload: { from: 'attempt 1' } })
          .then(
            () => 'written',
            (error: unknown) => error,
          );
      },
      { routingKeys: ['lateafter'], timeoutMs: 300 },
    );
    const host = await f.host([def]);
    await f.publish('lateafter', { n: 1 }, { messageId: 'lateafter-1' });
    await waitFor('the retry handled', () => host.stats(name).handled === 1, 20_000);
    retried();
    await waitFor('the late row tried', () => late !== undefined);
    assert.ok(refusedLate(late), `refused, got ${String(late)}`);
    const { rows } = await f.t.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM "${f.t.schema}".outbox WHERE routing_key = 'lateafter'`,
    );
    assert.equal(rows[0]!.n, 0);
  });

  it('aborts the signal at the time-out, also for a handler that reads it only afterwards', async () => {
    const name = f.name('signal');
    let timedOut!: () => void;
    const pastTimeOut = new Promise<void>((resolve) => {
      timedOut = resolve;
    });
    const seen: Array<{
      readonly id: string;
      readonly aborted: boolean;
      readonly reason: unknown;
    }> = [];
    const def = f.definition(
      'signal',
      async (payload: { id: string }, ctx: ConsumeContext) => {
        if (ctx.attempt > 1) return f.recordEffect(payload, ctx);
        if (payload.id === 'early') {
          const { signal } = ctx;
          await once(signal, 'abort');
          seen.push({ id: payload.id, aborted: signal.aborted, reason: signal.reason });
          return;
        }
        // Reads its signal for the first time once its attempt timed out.
        await pastTimeOut;
        seen.push({ id: payload.id, aborted: ctx.signal.aborted, reason: ctx.signal.reason });
      },
      { routingKeys: ['signal'], timeoutMs: 300, concurrency: 2 },
    );
    const host = await f.host([def]);
    await f.publish('signal', { id: 'early' }, { messageId: 'signal-early' });
    await f.publish('signal', { id: 'late' }, { messageId: 'signal-late' });
    await waitFor('both attempts to time out', () => host.stats(name).timeouts === 2, 5000);
    timedOut();
    await waitFor('both handlers to read their signal', () => seen.length === 2, 5000);
    for (const { id, aborted, reason } of seen) {
      assert.equal(aborted, true, id);
      assert.ok(reason instanceof HandlerTimeoutError, id);
    }
    await waitFor('both retries to be handled', () => host.stats(name).handled === 2, 10_000);
  });

  it('batched: the time-out counts as an attempt and the others do not wait for the stuck batch', async () => {
    const name = f.name('stuck-batch');
    const def = f.definition(
      'stuck-batch',
      async (payload: { id: string }, ctx: ConsumeContext) => {
        await f.recordEffect(payload, ctx);
        if (payload.id === 'b3' && ctx.attempt === 1) await never();
      },
      { routingKeys: ['stuck-batch'], timeoutMs: 1000, concurrency: 1, batchSize: 5 },
    );
    const host = await f.host([def], {}, false);
    // Queue everything before consuming, so the five arrive as one batch.
    await host.start();
    await host.stop();
    const ids = ['b1', 'b2', 'b3', 'b4', 'b5'];
    await f.publishMany(
      ids.map((id) => ({ routingKey: 'stuck-batch', content: { id }, options: { messageId: id } })),
    );
    const again = await f.host([def]);
    await waitFor('all handled', () => again.stats(name).handled === 5, 10_000);
    const stats = again.stats(name);
    assert.equal(stats.batches >= 1, true);
    assert.equal(stats.timeouts, 1, 'the batch time-out was not counted');
    assert.equal(stats.retried, 1);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.deepEqual(effects.map((e) => `${e.key}@${e.attempt}`).sort(), [
      'b1@1',
      'b2@1',
      'b3@2',
      'b4@1',
      'b5@1',
    ]);
    assert.equal(await openTransactions(), 0);
  });

  it("terminates a timed-out session only if its transaction is as old as the handler's", async () => {
    // Retried for minutes while Postgres is away, the terminate must not hit a session that got
    // the pid after a restart: its transaction began later.
    const { terminateBackend } = processedQueries(f.t.schema);
    const victim = await f.t.pool.connect();
    victim.on('error', () => {});
    try {
      await victim.query('BEGIN');
      const { rows } = await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const pid = rows[0]!.pid;
      const tooYoung = await f.t.pool.query(terminateBackend, [pid, 60_000]);
      assert.equal(tooYoung.rows.length, 0, 'a transaction younger than 60 s is not ours');
      assert.deepEqual((await victim.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
      const ours = await f.t.pool.query(terminateBackend, [pid, 0]);
      assert.deepEqual(ours.rows, [{ pg_terminate_backend: true }]);
      await assert.rejects(victim.query('SELECT 1'));
    } finally {
      victim.release(true);
    }
  });

  it('the claim waits for a key held by another transaction no longer than timeoutMs', async () => {
    const name = f.name('held');
    const def = f.definition('held', f.recordEffect, {
      routingKeys: ['held'],
      timeoutMs: 300,
      retry: { maxAttempts: 10, backoff: { initialMs: 20, maxMs: 50 } },
    });
    const host = await f.host([def]);
    // Another transaction claimed the key and neither commits nor rolls back.
    const holder: PoolClient = await f.t.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO ${outboxTables(f.t.schema).processed} (consumer, business_key) VALUES ($1, $2)`,
        [name, 'held-1'],
      );
      const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))
        .rows[0]!.pid;
      await f.publish('held', { n: 1 }, { messageId: 'held-1' });
      await waitFor('the claim to time out', () => host.stats(name).timeouts >= 1, 3000);
      await holder.query('ROLLBACK');
      await waitFor('the message to be handled', () => host.stats(name).handled === 1, 5000);
      assert.equal(await openTransactions(holderPid), 0);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      holder.release();
    }
    assert.equal(host.stats(name).deadLettered, 0);
    const effects = (await f.effects()).filter((e) => e.consumer === name);
    assert.equal(effects.length, 1);
  });
});
