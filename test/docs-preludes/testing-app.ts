// docs/testing.md's "your application" (`../src/app.js`): its Kysely instance, pg pool and consumer.
import { Kysely, PostgresDialect } from 'kysely';
import { defineConsumer } from 'outboxkit';
import pg from 'pg';

export interface Database {
  orders: { id: string; total: number };
  invoices: { order_id: string };
}

export const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
export const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });

export const billing = defineConsumer<{ orderId: string }, Database>({
  name: 'billing.order-placed',
  exchange: 'orders',
  routingKeys: ['order.placed'],
  async handler(order, { trx }) {
    await trx.insertInto('invoices').values({ order_id: order.orderId }).execute();
  },
});
