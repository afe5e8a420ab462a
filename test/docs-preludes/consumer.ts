// docs/consumer.md's consumer, run: a database of its own, migrated, with a customer; during
// the run an order is published to the consumer's exchange and must be invoiced once.
import * as __assert from 'node:assert/strict';
import * as __amqp from 'amqplib';
import { migrate as __migrate } from 'outboxkit';
import { waitForIdle as __waitForIdle } from 'outboxkit/testing';

await __migrate(pool);
await db.schema
  .createTable('customers')
  .addColumn('id', 'text', (c) => c.primaryKey())
  .addColumn('name', 'text', (c) => c.notNull())
  .execute();
await db.schema
  .createTable('invoices')
  .addColumn('order_id', 'text', (c) => c.primaryKey())
  .addColumn('customer_id', 'text', (c) => c.notNull())
  .execute();
await db.insertInto('customers').values({ id: 'c-1', name: 'Ada' }).execute();
// @during
{
  const broker = await __amqp.connect(amqpUrl);
  const channel = await broker.createConfirmChannel();
  const content = Buffer.from(JSON.stringify({ orderId: 'o-1', customerId: 'c-1', total: 42 }));
  for (const messageId of ['m-1', 'm-2']) {
    // Two messages of one order: the business key makes the second a duplicate.
    channel.publish('orders', 'order.placed', content, {
      messageId,
      contentType: 'application/json',
      persistent: true,
    });
  }
  await channel.waitForConfirms();
  await broker.close();
  await __waitForIdle(host, { amqpUrl });
  const invoices = await db.selectFrom('invoices').selectAll().execute();
  __assert.deepEqual(invoices, [{ order_id: 'o-1', customer_id: 'c-1' }]);
  __assert.equal(host.stats('billing.order-placed').handled, 1);
}
