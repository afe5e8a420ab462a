import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Inject, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import * as amqp from 'amqplib';
import { partitionSet } from '../src/consumer/partition-set.js';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  OutboxModule,
  OutboxService,
} from '../src/nestjs/index.js';
import { AMQP_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { waitFor } from './support/wait-for.js';

const EFFECTS = Symbol('effects table');

interface StatusChanged {
  orderId: string;
  seq: number;
}
const StatusChanged = defineMessage<StatusChanged>({
  exchange: 'orders',
  routingKey: 'order.status-changed',
  orderingKey: (s) => s.orderId,
});

@Injectable()
class StatusHandler {
  constructor(@Inject(EFFECTS) private readonly effects: string) {}

  @OutboxHandler(StatusChanged, {
    name: 'partitioned.status',
    ordered: true,
    partitions: 3,
    queueType: 'classic',
    businessKey: (s) => `${s.orderId}-${s.seq}`,
  })
  async apply(_change: StatusChanged, ctx: ConsumeContext): Promise<void> {
    await ctx.trx
      .insertInto(this.effects)
      .values({ consumer: ctx.consumer, key: ctx.businessKey })
      .execute();
  }
}

describe('nestjs: a partitioned @OutboxHandler', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('npart');
    await f.t.pool.query(`CREATE TABLE "${f.t.schema}".effects (
      id bigserial PRIMARY KEY, consumer text NOT NULL, key text NOT NULL)`);
  });
  after(async () => {
    const set = partitionSet(f.name('partitioned.status'), 3);
    await f.close();
    // The fixture deletes what it knows of (the first partition, the dead-letter queue); the rest:
    const connection = await amqp.connect(AMQP_URL);
    const channel = await connection.createChannel();
    for (const q of set.queues) await channel.deleteQueue(q);
    await channel.deleteExchange(set.exchange);
    await connection.close();
  });

  it('declares the partitions and handles each ordering key in order', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [OutboxModule.forRoot(f.options())],
      providers: [StatusHandler, { provide: EFFECTS, useValue: `${f.t.schema}.effects` }],
    }).compile();
    const app = await f.init(moduleRef);
    const outbox = app.get(OutboxService);
    const orders = 6;
    const perOrder = 10;
    for (let seq = 0; seq < perOrder; seq += 1) {
      await f.t.db.transaction().execute((trx) =>
        outbox.addMany(
          trx,
          StatusChanged,
          Array.from({ length: orders }, (_, o) => ({ orderId: `o${o}`, seq })),
        ),
      );
    }
    const name = f.name('partitioned.status');
    await waitFor(
      'all handled',
      () => outbox.consumerHost?.stats(name).handled === orders * perOrder,
      30_000,
    );
    for (const queue of partitionSet(name, 3).queues) {
      assert.notEqual(await f.depth(queue), undefined, `${queue} was declared`);
    }
    const rows = await f.query<{ key: string }>(
      `SELECT key FROM "${f.t.schema}".effects ORDER BY id`,
    );
    assert.equal(rows.length, orders * perOrder);
    const order = new Map<string, number[]>();
    for (const { key } of rows) {
      const [orderId, seq] = key.split('-') as [string, string];
      order.set(orderId, [...(order.get(orderId) ?? []), Number(seq)]);
    }
    for (const [orderId, seqs] of order) {
      assert.deepEqual(
        seqs,
        Array.from({ length: perOrder }, (_, i) => i),
        `order of ${orderId}`,
      );
    }
    await f.closeApp(app);
  });
});
