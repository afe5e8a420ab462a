import { Inject, Injectable } from '@nestjs/common';
import {
  type ConsumeContext,
  OutboxHandler,
  OutboxService,
  PermanentError,
} from '../../../src/nestjs/index.js';
import type { ExampleDatabase } from '../database.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { OrderCancelled, OrderPlaced, StockReserved } from '../messages.js';
import { inSpan } from '../tracing.js';

type Context = ConsumeContext<ExampleDatabase>;

/**
 * The inventory service. One ordered handler takes both order messages, so a cancellation is
 * never handled before the placement it cancels. Every effect goes through `ctx.trx`, which
 * also records the message as processed: a redelivered or re-announced message has no effect.
 */
@Injectable()
export class InventoryHandler {
  constructor(
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(LatencyRecorder) private readonly latency: LatencyRecorder,
  ) {}

  @OutboxHandler([OrderPlaced, OrderCancelled], {
    name: 'inventory.orders',
    ordered: true,
    concurrency: 8,
    // Deduplicated by order, not by message: a second `order.placed` for an order reserves nothing.
    businessKey: (event) => `${event.kind}:${event.orderId}`,
    retry: { maxAttempts: 3, backoff: { initialMs: 200, maxMs: 1000 } },
  })
  async onOrderEvent(event: OrderPlaced | OrderCancelled, ctx: Context): Promise<void> {
    // The handler's own span, a child of outboxkit's `process <queue>` span.
    const attributes = { 'order.id': event.orderId };
    if (event.kind === 'placed')
      await inSpan('reserve stock', attributes, () => this.#reserve(event, ctx));
    else await inSpan('release stock', attributes, () => this.#release(event, ctx));
  }

  async #reserve(order: OrderPlaced, ctx: Context): Promise<void> {
    if (ctx.attempt === 1) this.latency.handled(order.orderId);
    // The gizmo warehouse answers slowly: the first attempt fails and is retried, in place,
    // holding back this order's later messages.
    if (order.sku === 'gizmo' && ctx.attempt === 1) throw new Error('gizmo warehouse timed out');
    const { trx } = ctx;
    await trx
      .insertInto('reservations')
      .values({ order_id: order.orderId, sku: order.sku, quantity: order.quantity })
      .execute();
    await trx
      .insertInto('inventory_log')
      .values({ order_id: order.orderId, event: 'reserved' })
      .execute();
    await this.outbox.add(
      trx,
      StockReserved,
      { orderId: order.orderId, sku: order.sku, quantity: order.quantity },
      { causedBy: ctx },
    );
    // Last, so the stock row, which every order of the SKU updates, stays locked only briefly.
    const updated = await trx
      .updateTable('stock')
      .set((eb) => ({
        available: eb('available', '-', order.quantity),
        reserved: eb('reserved', '+', order.quantity),
      }))
      .where('sku', '=', order.sku)
      .where('available', '>=', order.quantity)
      .executeTakeFirst();
    // No retry can make stock appear: straight to the dead-letter queue (and all of the above
    // rolls back with the transaction).
    if (updated.numUpdatedRows === 0n) throw new PermanentError(`no stock of SKU "${order.sku}"`);
  }

  async #release(cancel: OrderCancelled, { trx }: Context): Promise<void> {
    const reservation = await trx
      .selectFrom('reservations')
      .select(['sku', 'quantity'])
      .where('order_id', '=', cancel.orderId)
      .executeTakeFirst();
    if (!reservation) {
      // Only possible if the cancellation overtook the placement: the summary counts these.
      await trx
        .insertInto('inventory_log')
        .values({ order_id: cancel.orderId, event: 'release-before-reservation' })
        .execute();
      return;
    }
    await trx
      .updateTable('stock')
      .set((eb) => ({
        available: eb('available', '+', reservation.quantity),
        reserved: eb('reserved', '-', reservation.quantity),
      }))
      .where('sku', '=', reservation.sku)
      .execute();
    await trx
      .insertInto('inventory_log')
      .values({ order_id: cancel.orderId, event: 'released' })
      .execute();
  }
}
