import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { TransactionAbortedError } from '../src/consumer/transaction-aborted-error.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { waitFor } from './support/wait-for.js';

// Postgres answers COMMIT on a transaction a failed statement aborted with ROLLBACK, not an
// error: a handler that catches its statement's error and returns would have its message acked
// with nothing of it committed, the dedupe row included.
describe('idempotent consumer: a handler that swallows a failed statement', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('cabort');
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
