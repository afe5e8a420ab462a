import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Kysely, Transaction } from 'kysely';
import type { Pool } from 'pg';
import { z } from 'zod';
import {
  type ConsumeContext,
  defineMessage,
  OutboxHandler,
  type OutboxService,
  type OutboxTransaction,
  type PayloadOf,
} from '../src/nestjs/index.js';

// Compile-time tests: `tsc` fails the build when a line marked `@ts-expect-error` compiles, so
// each marked line proves that a payload of the wrong shape is a compile error. The functions
// are never called; only the runtime test at the bottom runs.

interface OrderPlaced {
  orderId: string;
  quantity: number;
}
const OrderPlaced = defineMessage<OrderPlaced>({
  exchange: 'orders',
  routingKey: 'order.placed',
  orderingKey: (order) => order.orderId,
});
interface OrderCancelled {
  orderId: string;
  reason: string;
}
const OrderCancelled = defineMessage<OrderCancelled>({
  exchange: 'orders',
  routingKey: 'order.cancelled',
});

interface Database {
  orders: { id: string };
}

export function writerChecks(outbox: OutboxService, trx: Transaction<Database>): void {
  void outbox.add(trx, OrderPlaced, { orderId: 'o-1', quantity: 2 });
  void outbox.addMany(trx, OrderPlaced, [{ orderId: 'o-1', quantity: 2 }]);
  // @ts-expect-error quantity is a number
  void outbox.add(trx, OrderPlaced, { orderId: 'o-1', quantity: '2' });
  // @ts-expect-error quantity is missing
  void outbox.add(trx, OrderPlaced, { orderId: 'o-1' });
  // @ts-expect-error a property the payload type does not have
  void outbox.add(trx, OrderPlaced, { orderId: 'o-1', quantity: 2, coupon: 'X' });
  // @ts-expect-error a payload of another message
  void outbox.add(trx, OrderPlaced, { orderId: 'o-1', reason: 'late' } satisfies OrderCancelled);
  // @ts-expect-error one element of the wrong shape
  void outbox.addMany(trx, OrderPlaced, [{ orderId: 'o-1', quantity: 2 }, { orderId: 3 }]);
}

// A pool or the Kysely instance is not a transaction: refused as by the core writer (both
// compiled, and failed at run time only; found by a probe).
export function transactionChecks(outbox: OutboxService, pool: Pool, db: Kysely<Database>): void {
  // @ts-expect-error a pool: the message would commit apart from the business rows
  void outbox.add(pool, OrderPlaced, { orderId: 'o-1', quantity: 2 });
  // @ts-expect-error the Kysely instance, not its transaction
  void outbox.add(db, OrderPlaced, { orderId: 'o-1', quantity: 2 });
}

// A compiler that reports only the last overload's error (TypeScript 7) must name the payload's
// wrong field, not the transaction: the transaction-first form is the last one. Inference from
// an overloaded function takes its last signature.
type FirstParameterOfLast<F> = F extends (first: infer P, ...rest: infer _) => unknown ? P : never;
export const lastAddTakesTheTransaction: FirstParameterOfLast<OutboxService['add']> =
  {} as OutboxTransaction;
export const lastAddManyTakesTheTransaction: FirstParameterOfLast<OutboxService['addMany']> =
  {} as OutboxTransaction;
// @ts-expect-error a message definition is not what the last overload takes first
export const notTheMessageFirst: FirstParameterOfLast<OutboxService['add']> = OrderPlaced;

export function definitionChecks(): void {
  defineMessage<OrderPlaced>({
    exchange: 'orders',
    routingKey: 'order.placed',
    // @ts-expect-error the ordering key must come from a field of the payload
    orderingKey: (order) => order.customerId,
  });
  const placed: PayloadOf<typeof OrderPlaced> = { orderId: 'o-1', quantity: 1 };
  const either: PayloadOf<[typeof OrderPlaced, typeof OrderCancelled]> = {
    orderId: 'o-1',
    reason: 'late',
  };
  void placed;
  void either;
}

export function handlerChecks(): void {
  class Handlers {
    @OutboxHandler(OrderPlaced, { name: 'q1', businessKey: (order) => order.orderId })
    exact(_order: OrderPlaced, _ctx: ConsumeContext<Database>): void {}

    @OutboxHandler(OrderPlaced, { name: 'q2' })
    async fewerFields(_order: { orderId: string }): Promise<void> {}

    @OutboxHandler(OrderPlaced, { name: 'q3' })
    anything(_payload: unknown): void {}

    @OutboxHandler([OrderPlaced, OrderCancelled], {
      name: 'q4',
      businessKey: (event, info) => `${info.routingKey}:${event.orderId}`,
    })
    union(_event: OrderPlaced | OrderCancelled, _ctx: ConsumeContext): void {}

    // @ts-expect-error the handler takes another message's payload
    @OutboxHandler(OrderPlaced, { name: 'q5' })
    wrongMessage(_cancelled: OrderCancelled): void {}

    // @ts-expect-error a field of the wrong type
    @OutboxHandler(OrderPlaced, { name: 'q6' })
    wrongField(_order: { orderId: number }): void {}

    // @ts-expect-error the handler expects a field the payload does not have
    @OutboxHandler(OrderPlaced, { name: 'q7' })
    extraField(_order: OrderPlaced & { coupon: string }): void {}

    // @ts-expect-error a handler of two messages must take either payload
    @OutboxHandler([OrderPlaced, OrderCancelled], { name: 'q8' })
    onlyOne(_order: OrderPlaced): void {}

    // @ts-expect-error the business key reads a field the payload does not have
    @OutboxHandler(OrderPlaced, { name: 'q9', businessKey: (order) => order.customerId })
    badKey(_order: OrderPlaced): void {}
  }
  void Handlers;
}

// A definition typed by its schema: the writer takes the schema's input (a field with a default
// may be left out), the handler and the business key get its output (the field is there).
const shippedSchema = z.object({ parcelId: z.string(), carrier: z.string().default('post') });
const ParcelShipped = defineMessage({
  exchange: 'parcels',
  routingKey: 'parcel.shipped',
  validate: shippedSchema,
});

export function schemaDefaultChecks(outbox: OutboxService, trx: Transaction<Database>): string {
  void outbox.add(trx, ParcelShipped, { parcelId: 'p-1' });
  const shipped: PayloadOf<typeof ParcelShipped> = { parcelId: 'p-1', carrier: 'post' };
  // @ts-expect-error the handler's payload has the default filled in: `carrier` is required
  const withoutCarrier: PayloadOf<typeof ParcelShipped> = { parcelId: 'p-1' };
  void withoutCarrier;
  const inList: PayloadOf<readonly [typeof ParcelShipped, typeof OrderCancelled]> = shipped;
  void inList;
  class Handlers {
    @OutboxHandler(ParcelShipped, {
      name: 'q10',
      businessKey: (parcel) => `${parcel.carrier.toUpperCase()}:${parcel.parcelId}`,
    })
    output(_parcel: z.output<typeof shippedSchema>): void {}

    @OutboxHandler([ParcelShipped, OrderCancelled], { name: 'q11' })
    either(_event: z.output<typeof shippedSchema> | OrderCancelled): void {}
  }
  void Handlers;
  return shipped.carrier.toUpperCase();
}

// A validating function's `undefined` dead-letters the message: the handler never gets it, so
// it is not part of the payload's type (it was: `OrderCancelled | undefined`).
const UnwrappedCancel = defineMessage({
  exchange: 'orders',
  routingKey: 'order.cancelled.nest',
  validate: (raw: unknown) => (raw as { data?: OrderCancelled }).data,
});
export function validateUndefinedChecks(): string {
  const cancel: OrderCancelled = null as unknown as PayloadOf<typeof UnwrappedCancel>;
  return cancel.reason;
}

describe('nestjs: message definitions', () => {
  it('are frozen plain data; the type checks above ran at compile time', () => {
    assert.ok(Object.isFrozen(OrderPlaced));
    assert.equal(OrderPlaced.exchange, 'orders');
    assert.equal(OrderPlaced.orderingKey?.({ orderId: 'o-7', quantity: 1 }), 'o-7');
  });
});
