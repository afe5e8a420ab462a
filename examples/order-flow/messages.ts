import { defineMessage } from '../../src/nestjs/index.js';

// The messages of the example, shared by the publishers and the handlers. Both modules import
// them from here, so a payload of the wrong shape fails to compile on either side.

/** An order was placed: the inventory reserves its stock. */
export interface OrderPlaced {
  readonly kind: 'placed';
  readonly orderId: string;
  readonly sku: string;
  readonly quantity: number;
}

/** An order was cancelled: the inventory releases what it reserved. */
export interface OrderCancelled {
  readonly kind: 'cancelled';
  readonly orderId: string;
}

/** The inventory reserved the stock of an order: the order service confirms the order. */
export interface StockReserved {
  readonly orderId: string;
  readonly sku: string;
  readonly quantity: number;
}

// Both order messages use the order id as ordering key: the relay publishes them in the order
// they were written, and an `ordered` handler handles them in that order.
const byOrder = (event: { orderId: string }) => event.orderId;

export const OrderPlaced = defineMessage<OrderPlaced>({
  exchange: 'orders',
  routingKey: 'order.placed',
  orderingKey: byOrder,
});

export const OrderCancelled = defineMessage<OrderCancelled>({
  exchange: 'orders',
  routingKey: 'order.cancelled',
  orderingKey: byOrder,
});

export const StockReserved = defineMessage<StockReserved>({
  exchange: 'inventory',
  routingKey: 'stock.reserved',
});
