import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Test } from '@nestjs/testing';
import { OutboxModule } from '../src/nestjs/outbox.module.js';
import { AMQP_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { uniqueName } from './support/test-database.js';

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
