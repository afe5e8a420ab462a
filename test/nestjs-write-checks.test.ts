import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { InvalidMessageError } from '../src/errors/invalid-message-error.js';
import { defineMessage } from '../src/nestjs/message-definition.js';
import { OutboxService } from '../src/nestjs/outbox.service.js';
import type { OutboxRuntime } from '../src/nestjs/outbox-runtime.js';
import type { OutboxMessage } from '../src/writer/outbox-message.js';
import type { OutboxWriter } from '../src/writer/outbox-writer.js';

const trx = { query: async () => ({ rows: [] }) };

/** A service whose writer records the messages it is given. */
function service(): { outbox: OutboxService; written: OutboxMessage[][] } {
  const written: OutboxMessage[][] = [];
  const writer = {
    add: async (_trx: unknown, m: OutboxMessage) => {
      written.push([m]);
      return 'id';
    },
    addMany: async (_trx: unknown, ms: OutboxMessage[]) => {
      written.push(ms);
      return ms.map(() => 'id');
    },
  } as unknown as OutboxWriter;
  const runtime = { writer, options: { prefix: '' } } as unknown as OutboxRuntime;
  return { outbox: new OutboxService(runtime), written };
}

const Placed = defineMessage<{ id: number }>({ exchange: 'orders', routingKey: 'order.placed' });

describe('Nest writer paths check what they are given', () => {
  it('defineMessage refuses unknown keys, an unknown exchangeType and over-long names', () => {
    const refused = (definition: unknown, option: RegExp, detail: RegExp) =>
      assert.throws(
        () => defineMessage(definition as never),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          option.test(error.option) &&
          detail.test(error.message),
      );
    const ok = { exchange: 'orders', routingKey: 'order.placed' };
    refused({ ...ok, orderKey: () => 'k' }, /\.orderKey$/, /not an option of a message definition/);
    refused({ ...ok, exchangeType: 'bogus' }, /\.exchangeType$/, /topic, direct, fanout/);
    refused({ ...ok, exchange: 'e'.repeat(300) }, /\.exchange$/, /255 bytes/);
    refused({ ...ok, routingKey: 'k'.repeat(300) }, /\.routingKey$/, /255 bytes/);
    refused({ ...ok, exchange: 'amq.orders' }, /\.exchange$/, /reserved/);
    // RabbitMQ's own exist, and the module does not declare them.
    defineMessage({ ...ok, exchange: 'amq.topic' });
    defineMessage({ ...ok, exchangeType: 'direct' });
  });

  it('OutboxService.add refuses an unknown per-message option, with a did-you-mean', async () => {
    const { outbox, written } = service();
    await assert.rejects(
      outbox.add(trx, Placed, { id: 1 }, { dealyMs: 5 } as never),
      (error: unknown) =>
        error instanceof InvalidMessageError &&
        error.reason === 'unknown-field' &&
        /`dealyMs` is not a field of the options of OutboxService\.add; did you mean `delayMs`\?/.test(
          error.message,
        ),
    );
    await assert.rejects(
      outbox.add(trx, Placed, { id: 1 }, 'x' as never),
      (error: unknown) => error instanceof ConfigurationError && error.option === 'options',
    );
    await outbox.add(trx, Placed, { id: 1 }, { delayMs: 5 });
    assert.equal(written.at(-1)![0]!.delayMs, 5);
  });

  it('OutboxService.addMany refuses payloads that are not an array, and a shared messageId', async () => {
    const { outbox } = service();
    for (const payloads of ['x', null, {}, new Set()]) {
      await assert.rejects(
        outbox.addMany(trx, Placed, payloads as never),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'payloads' &&
          /takes an array of payloads/.test(error.message),
      );
    }
    await assert.rejects(
      outbox.addMany(trx, Placed, [{ id: 1 }], { messageId: 'm' } as never),
      (error: unknown) => error instanceof InvalidMessageError && error.reason === 'unknown-field',
    );
  });

  it("refuses a definition's orderingKey that returns undefined: the message would go unordered", async () => {
    const { outbox, written } = service();
    const Keyed = defineMessage<{ customerId: string }>({
      exchange: 'orders',
      routingKey: 'order.keyed',
      orderingKey: (order) => order.customerId,
    });
    // A body not validated upstream, without the field the key comes from.
    await assert.rejects(
      outbox.add(trx, Keyed, {} as never),
      (error: unknown) =>
        error instanceof InvalidMessageError &&
        error.reason === 'invalid-ordering-key' &&
        /returned undefined for this payload/.test(error.message),
    );
    await assert.rejects(
      outbox.addMany(trx, Keyed, [{ customerId: 'c1' }, {} as never]),
      (error: unknown) => error instanceof InvalidMessageError && error.index === 1,
    );
    assert.equal(written.length, 0, 'a message was written');
    // A key given in the options stands in for the derived one.
    await outbox.add(trx, Keyed, {} as never, { orderingKey: 'c2' });
    assert.equal(written.at(-1)![0]!.orderingKey, 'c2');
  });
});
