// Compiled by test/unset-options-types.test.ts with exactOptionalPropertyTypes on, as a team's
// stricter tsconfig does: an option that may be unset (`T | undefined`, read from config) is
// taken as left out at run time, so the types must take it too. Each line was refused (a probe).
import type { Kysely } from 'kysely';
import { defineMessage, OutboxHandler, OutboxModule } from '../../dist/src/nestjs/index.js';
import type { Capture } from '../../dist/src/testing/index.js';

interface OrderPlaced {
  orderId: string;
}
const OrderPlaced = defineMessage<OrderPlaced>({ exchange: 'orders', routingKey: 'order.placed' });

declare const maybeKey: ((order: OrderPlaced) => string) | undefined;
declare const isGlobal: boolean | undefined;
declare const timeoutMs: number | undefined;

export class Handlers {
  @OutboxHandler(OrderPlaced, { name: 'unset', businessKey: maybeKey })
  placed(_order: OrderPlaced): void {}
}

export function unsetOptions(capture: Capture, db: Kysely<object>): void {
  void OutboxModule.forRoot({ db, amqpUrl: 'amqp://localhost', isGlobal });
  void capture.waitFor(1, { timeoutMs });
}
