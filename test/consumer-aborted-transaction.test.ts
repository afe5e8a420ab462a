import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, afterEach, before, describe, it } from 'node:test';
import {
  CompiledQuery,
  Kysely,
  type PostgresCursorConstructor,
  PostgresDialect,
  sql,
} from 'kysely';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import type { ConsumerHost } from '../src/consumer/consumer-host.js';
import { TransactionAbortedError } from '../src/consumer/transaction-aborted-error.js';
import { TransactionControlError } from '../src/consumer/transaction-control-error.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

// Postgres answers COMMIT on a transaction a failed statement aborted with ROLLBACK, not an
// error: a handler that catches its statement's error and returns would have its message acked
// with nothing of it committed, the dedupe row included.
const Cursor = createRequire(import.meta.url)('pg-cursor') as PostgresCursorConstructor;

describe('idempotent consumer: a handler that swallows a failed statement', () => {
  let f: ConsumerFixture;
  // The application's Kysely with streaming on (pg-cursor), over the fixture's pool.
  // biome-ignore lint/suspicious/noExplicitAny: the test's tables are the fixture's own
  let streaming: Kysely<any>;
  before(async () => {
    f = await ConsumerFixture.open('cabort');
    streaming = new Kysely({ dialect: new PostgresDialect({ pool: f.t.pool, cursor: Cursor }) });
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(() => f.close());

  it('is a failed attempt, retried, never acked as handled', async () => {
    const name = f.name('swallow');
    const def = f.definition(
      'swallow',
      async (payload, ctx) => {
        await f.recordEffect(payload, ctx);
        if (ctx.attempt === 1) {
          try {
            await sql`SELECT 1 / 0`.execute(ctx.trx);
          } catch {
            // "Not important": the transaction is aborted all the same.
          }
        }
      },
      { routingKeys: ['swallow'], retry: { maxAttempts: 3, backoff: { initialMs: 20 } } },
    );
    const host = await f.host([def]);
    await f.publish('swallow', { n: 1 }, { messageId: 'swallow-1' });
    await waitFor('the message to be handled', () => host.stats(name).handled === 1);
    const effects = await f.effects();
    assert.deepEqual(
      effects.map((e) => e.attempt),
      [2],
      'the first attempt committed nothing, so it must be retried',
    );
    assert.equal(host.stats(name).failures, 1);
    const failure = host.lastFailure(name);
    assert.ok(failure?.error instanceof TransactionAbortedError, String(failure?.error));
    assert.match(failure.error.message, /division by zero/);
    assert.match(failure.error.message, /savepoint/);
  });

  /** Runs `handler` on message `n`'s first attempt, then records the effect on every attempt. */
  const firstAttempt = async (
    suffix: string,
    handler: (ctx: ConsumeContext) => Promise<void>,
  ): Promise<{ name: string; host: ConsumerHost }> => {
    const def = f.definition(
      suffix,
      async (payload, ctx) => {
        await f.recordEffect(payload, ctx);
        if (ctx.attempt === 1) await handler(ctx);
      },
      { routingKeys: [suffix], retry: { maxAttempts: 3, backoff: { initialMs: 20 } } },
    );
    const host = await f.host([def], { db: streaming });
    await f.publish(suffix, { n: 1 }, { messageId: `${suffix}-1` });
    await waitFor('the message handled', () => host.stats(def.name).handled === 1);
    return { name: def.name, host };
  };
  const attemptsWithEffect = async (name: string) =>
    (await f.effects()).filter((e) => e.consumer === name).map((e) => e.attempt);

  // Seen where every statement passes, its connection: a stream's failure, or a compiled query's
  // on a view derived from trx, went round what watched trx itself (Kysely 0.28.18 then acked).
  it('also when the failed statement was a stream, or a compiled query of a derived view', async () => {
    const division = sql<{ q: number }>`SELECT 1 / (3 - g) AS q FROM generate_series(1, 5) AS g`;
    for (const [suffix, fail] of [
      [
        'stream',
        async (ctx: ConsumeContext) => {
          for await (const _row of ctx.trx.selectFrom(division.as('d')).selectAll().stream(1)) {
            // Two rows, then division by zero.
          }
        },
      ],
      [
        'derived',
        (ctx: ConsumeContext) =>
          ctx.trx.withSchema('public').executeQuery(CompiledQuery.raw('SELECT 1 / 0')),
      ],
    ] as const) {
      const { name, host } = await firstAttempt(suffix, async (ctx) => {
        await fail(ctx).catch(() => {});
      });
      assert.deepEqual(await attemptsWithEffect(name), [2], suffix);
      assert.ok(host.lastFailure(name)?.error instanceof TransactionAbortedError, suffix);
    }
  });

  // A stream of a view derived from trx (withSchema, withPlugin) held the COMMIT for ever too.
  it('closes a stream the handler left open, and commits', async () => {
    for (const [suffix, view] of [
      ['openstream', (ctx: ConsumeContext) => ctx.trx],
      ['openschema', (ctx: ConsumeContext) => ctx.trx.withSchema('public')],
      ['openplugin', (ctx: ConsumeContext) => ctx.trx.withoutPlugins().withTables()],
    ] as const) {
      const { name, host } = await firstAttempt(suffix, async (ctx) => {
        const rows = view(ctx)
          .selectFrom(sql`generate_series(1, 1000)`.as('g'))
          .selectAll()
          .stream(10)
          [Symbol.asyncIterator]();
        await rows.next();
      });
      assert.deepEqual(await attemptsWithEffect(name), [1], suffix);
      assert.equal(host.stats(name).failures, 0, suffix);
    }
  });

  // After its own ROLLBACK, a handler's writes committed one by one, without the dedupe row,
  // and the message was acked as handled.
  it('refuses COMMIT, ROLLBACK and startTransaction() on trx', async () => {
    for (const [suffix, statement] of [
      ['rollback', (ctx: ConsumeContext) => sql`ROLLBACK`.execute(ctx.trx)],
      ['commit', (ctx: ConsumeContext) => sql`commit`.execute(ctx.trx)],
      // Kysely 0.29 types it as never on a transaction; 0.28 does not.
      [
        'nested',
        (ctx: ConsumeContext) =>
          (ctx.trx as unknown as Kysely<unknown>).startTransaction().execute(),
      ],
      [
        'nested-derived',
        (ctx: ConsumeContext) =>
          (ctx.trx.withSchema('public') as unknown as Kysely<unknown>).startTransaction().execute(),
      ],
    ] as const) {
      const { name, host } = await firstAttempt(`control-${suffix}`, async (ctx) => {
        await statement(ctx);
      });
      assert.deepEqual(await attemptsWithEffect(name), [2], suffix);
      const error = host.lastFailure(name)?.error;
      assert.ok(error instanceof TransactionControlError, `${suffix}: ${String(error)}`);
    }
  });

  it('a statement recovered with a savepoint commits as usual', async () => {
    const name = f.name('savepoint');
    const def = f.definition(
      'savepoint',
      async (payload, ctx) => {
        await sql`SAVEPOINT before_division`.execute(ctx.trx);
        try {
          await sql`SELECT 1 / 0`.execute(ctx.trx);
        } catch {
          await sql`ROLLBACK TO SAVEPOINT before_division`.execute(ctx.trx);
        }
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['savepoint'] },
    );
    const host = await f.host([def]);
    await f.publish('savepoint', { n: 1 }, { messageId: 'savepoint-1' });
    await waitFor('the message to be handled', () => host.stats(name).handled === 1);
    assert.deepEqual(
      (await f.effects()).filter((e) => e.consumer === name).map((e) => e.attempt),
      [1],
    );
    assert.equal(host.stats(name).failures, 0);
  });
});
