// The README's Quick start, run: a database of its own, migrated as `npx outboxkit migrate`
// does, with the `orders` table; a queue on the alternate exchange the Quick start declares
// (the message has no other binding). During the run, the written message must be published.
import * as __assert from 'node:assert/strict';
import * as __amqp from 'amqplib';
import { migrate as __migrate } from 'outboxkit';
import { flushOutbox as __flushOutbox } from 'outboxkit/testing';

await __migrate(pool);
await db.schema
  .createTable('orders')
  .addColumn('id', 'text', (c) => c.primaryKey())
  .addColumn('total', 'integer', (c) => c.notNull())
  .execute();
const __broker = await __amqp.connect(amqpUrl);
const __channel = await __broker.createChannel();
await __channel.assertExchange('orders.unrouted', 'fanout', { durable: true });
await __channel.assertQueue('orders.unrouted', { exclusive: true });
await __channel.bindQueue('orders.unrouted', 'orders.unrouted', '');
// @during
await __flushOutbox(pool, { relay });
const __published = await __channel.get('orders.unrouted', { noAck: true });
__assert.ok(__published, 'the Quick start message reached the broker');
__assert.deepEqual(JSON.parse(__published.content.toString()), { orderId: order.id });
// @after
await __broker.close();
