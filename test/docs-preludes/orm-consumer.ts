// docs/orm.md's consumers, run: a database of its own, migrated, with an `invoices` table; during
// the run an order is published to the consumers' exchange and every host must invoice it once.
// The run's hosts are `__hosts()` (defined by prelude orm-consumer-typeorm or -stacks).
import * as __assert from 'node:assert/strict';
import * as __amqp from 'amqplib';
import { migrate as __migrate } from 'outboxkit';
import { waitForIdle as __waitForIdle } from 'outboxkit/testing';

await __migrate(pool);
await pool.query('CREATE TABLE invoices (order_id integer NOT NULL)');
// @during
{
  const broker = await __amqp.connect(amqpUrl);
  const channel = await broker.createConfirmChannel();
  const content = Buffer.from(JSON.stringify({ orderId: 7 }));
  for (const messageId of ['m-1', 'm-1']) {
    // The same message twice: the dedupe row makes the second a duplicate.
    channel.publish('orders', 'order.placed', content, {
      messageId,
      contentType: 'application/json',
      persistent: true,
    });
  }
  await channel.waitForConfirms();
  await broker.close();
  const __all = __hosts();
  for (const h of __all) await __waitForIdle(h, { amqpUrl });
  const { rows } = await pool.query('SELECT order_id FROM invoices');
  __assert.deepEqual(
    rows,
    __all.map(() => ({ order_id: 7 })),
  );
  for (const h of __all) {
    __assert.equal(h.stats(h.consumers[0]!).handled, 1);
  }
}
