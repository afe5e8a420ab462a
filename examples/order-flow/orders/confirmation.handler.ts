import { Injectable } from '@nestjs/common';
import { type ConsumeContext, OutboxHandler } from '../../../src/nestjs/index.js';
import type { ExampleDatabase } from '../database.js';
import { StockReserved } from '../messages.js';
import { inSpan } from '../tracing.js';

/** The order service's side of `stock.reserved`: it records the confirmation of the order. */
@Injectable()
export class ConfirmationHandler {
  @OutboxHandler(StockReserved, {
    name: 'orders.stock-reserved',
    businessKey: (reserved) => reserved.orderId,
    // Each distinct retry delay is a delay queue: a short schedule keeps the topology small.
    retry: { maxAttempts: 3, backoff: { initialMs: 500, maxMs: 1000 } },
  })
  async confirm(reserved: StockReserved, { trx }: ConsumeContext<ExampleDatabase>): Promise<void> {
    await inSpan('confirm order', { 'order.id': reserved.orderId }, async () => {
      await trx.insertInto('confirmations').values({ order_id: reserved.orderId }).execute();
      await trx
        .updateTable('orders')
        .set({ status: 'confirmed' })
        .where('id', '=', reserved.orderId)
        .where('status', '=', 'placed')
        .execute();
    });
  }
}
