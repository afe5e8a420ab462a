import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import knexFactory from 'knex';
import type { ConsumerDefinition } from '../src/consumer/consumer-definition.js';
import { handleGateOf } from '../src/consumer/consumer-transactions.js';
import { HandlerTimeoutError } from '../src/consumer/handler-timeout-error.js';
import { knexTransaction } from '../src/knex/index.js';
import { clsConsumerTransactions } from '../src/nestjs-cls/index.js';
import { typeormTransaction } from '../src/typeorm/index.js';
import { type ClsTypeOrm, openClsTypeOrm } from './support/cls-typeorm.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

/**
 * nestjs-cls opens the consumer's transaction through its own callback, and the handler writes
 * through the ambient `txHost.tx`, which outboxkit never wraps. A timed-out handler's statement
 * sent while the ROLLBACK is on its way back queues behind it on the same connection: unless it
 * is refused, it runs after the ROLLBACK, on its own, and commits a write of an attempt that
 * was rolled back (the retry then writes it again).
 */
describe('nestjs-cls: a timed-out handler', () => {
  let f: ConsumerFixture;
  let proxy: TcpProxy;
  let cls: ClsTypeOrm;
  before(async () => {
    f = await ConsumerFixture.open('clslate');
    const { hostname, port } = new URL(DATABASE_URL);
    proxy = await TcpProxy.start(hostname, Number(port || 5432));
    cls = await openClsTypeOrm(proxy.url(DATABASE_URL));
  });
  after(async () => {
    await f.stopHosts();
    await cls.close();
    await proxy.close();
    await f.close();
  });

  it('cannot run a statement after the ROLLBACK, on its own', async () => {
    const { txHost } = cls;
    const insert = (key: string, attempt: number) =>
      txHost.tx.query(
        `INSERT INTO "${f.t.schema}".effects (consumer, key, attempt) VALUES ($1, $2, $3)`,
        [consumer, key, attempt],
      );
    let late: unknown;
    const definition: ConsumerDefinition = f.definition(
      'late',
      async (_payload, ctx) => {
        if (ctx.attempt > 1) {
          await insert(ctx.businessKey, ctx.attempt);
          return;
        }
        const [{ pid }] = (await txHost.tx.query('SELECT pg_backend_pid() AS pid')) as [
          { pid: number },
        ];
        await once(ctx.signal, 'abort');
        // The server ran the ROLLBACK; its answer is still held in the proxy, so TypeORM has not
        // released the connection, and a statement sent now queues behind the ROLLBACK.
        await waitFor('the ROLLBACK ran on the server', async () => {
          const { rows } = await f.t.pool.query<{ query: string }>(
            'SELECT query FROM pg_stat_activity WHERE pid = $1',
            [pid],
          );
          return rows[0]?.query === 'ROLLBACK';
        });
        late = await insert(ctx.businessKey, ctx.attempt).then(
          () => 'it ran',
          (error: unknown) => error,
        );
      },
      { timeoutMs: 2000 },
    );
    const consumer = definition.name;
    const host = await f.host([definition], {
      transactions: clsConsumerTransactions(txHost, typeormTransaction),
    });
    // Every answer of Postgres to the CLS data source comes 400 ms late.
    proxy.latency(400, 'toClient');
    await f.publish('late', { n: 1 }, { messageId: 'late-m1' });
    await waitFor('the retry handled', () => host.stats(consumer).handled === 1, 30_000);
    await waitFor('the late statement tried', () => late !== undefined);
    assert.ok(
      late instanceof HandlerTimeoutError,
      `the late statement was refused; ${String(late)}`,
    );
    assert.deepEqual(
      (await f.effects()).filter((e) => e.consumer === consumer).map((e) => e.attempt),
      [2],
      "the timed-out attempt's write did not commit",
    );
  });
});

describe('knexTransaction', () => {
  it('carries the gate clsConsumerTransactions puts in front of a Knex transaction', async () => {
    const knex = knexFactory({ client: 'pg', connection: DATABASE_URL });
    try {
      const gate = handleGateOf<object>(knexTransaction);
      assert.ok(gate, 'knexTransaction carries a gate');
      const refused = new Error('given up');
      let closed: Error | undefined;
      await knex.transaction(async (trx) => {
        gate(trx, () => closed);
        await trx.raw('SELECT 1');
        closed = refused;
        await assert.rejects(trx.raw('SELECT 1'), (error) => error === refused);
        // The transaction's own end still goes through.
      });
    } finally {
      await knex.destroy();
    }
  });
});
