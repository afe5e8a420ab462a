import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Test } from '@nestjs/testing';
import { OutboxModule } from '../src/nestjs/outbox.module.js';
import { OutboxService } from '../src/nestjs/outbox.service.js';
import { AMQP_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

describe('the Nest module at start', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nest_start');
  });
  after(() => f.close());

  async function initWith(overrides: Parameters<NestFixture['options']>[0]) {
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options({ exchanges: ['orders'], ...overrides }))],
    }).compile();
    const began = Date.now();
    try {
      await moduleRef.init();
    } finally {
      await moduleRef.close().catch(() => {});
    }
    return Date.now() - began;
  }

  it('fails at once with a RabbitMQ password the broker refuses', async () => {
    const url = new URL(AMQP_URL);
    url.password = 'wrong-secret';
    const began = Date.now();
    await assert.rejects(initWith({ amqpUrl: url.toString() }), (error: unknown) => {
      const e = error as { name?: string; code?: string; message: string };
      assert.equal(e.name, 'StartupError', String(error));
      assert.equal(e.code, 'broker-auth-refused');
      assert.doesNotMatch(e.message, /wrong-secret/);
      return true;
    });
    assert.ok(Date.now() - began < 10_000);
  });

  it('starts without RabbitMQ when it runs no handlers; the relay declares the exchanges later', async () => {
    const port = await TcpProxy.freePort();
    const down = new URL(AMQP_URL);
    down.port = String(port);
    const exchange = f.name('declared-late');
    f.trackExchange(exchange);
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot(
          f.options({ exchanges: ['declared-late'], amqpUrl: down.toString(), consumers: false }),
        ),
      ],
    }).compile();
    const began = Date.now();
    await moduleRef.init();
    let proxy: TcpProxy | undefined;
    try {
      assert.ok(Date.now() - began < 5_000, `init took ${Date.now() - began} ms`);
      // Written while RabbitMQ is down: the outbox is what lets the application go on.
      await f.t.db
        .transaction()
        .execute((trx) =>
          moduleRef.get(OutboxService).writer.add(trx, { exchange, routingKey: 'x', payload: {} }),
        );
      const broker = new URL(AMQP_URL);
      proxy = await TcpProxy.start(broker.hostname, Number(broker.port || 5672), port);
      // Published to the exchange the relay declared (a missing one would put the row off,
      // never park it); no queue is bound, so it comes back unroutable and is parked.
      const [parked] = await waitFor('the row published and parked', async () => {
        const rows = await f.query<{ reason: string }>(
          `SELECT reason FROM "${f.t.schema}".outbox_parked`,
        );
        return rows.length > 0 ? rows : undefined;
      });
      assert.match(parked!.reason, /^unroutable/);
      assert.equal(await f.exchangeExists(exchange), true);
    } finally {
      await moduleRef.close();
      await proxy?.close();
    }
  });

  it('fails on an unmigrated schema, naming the migrate command', async () => {
    const schema = uniqueName('unmigrated');
    await assert.rejects(initWith({ schema }), (error: unknown) => {
      const e = error as { name?: string; code?: string; message: string };
      assert.equal(e.name, 'StartupError', String(error));
      assert.equal(e.code, 'schema-not-migrated');
      assert.match(e.message, new RegExp(`outboxkit migrate --schema ${schema}`));
      return true;
    });
  });
});
