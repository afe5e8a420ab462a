import {
  BadRequestException,
  Body,
  ConflictException,
  Controller,
  HttpCode,
  Inject,
  NotFoundException,
  Param,
  Post,
} from '@nestjs/common';
import { trace } from '@opentelemetry/api';
import type { Kysely } from 'kysely';
import { OutboxService } from '../../../src/nestjs/index.js';
import { type ExampleDatabase, KYSELY } from '../database.js';
import { LatencyRecorder } from '../latency-recorder.js';
import { OrderCancelled, OrderPlaced } from '../messages.js';
import { inSpan } from '../tracing.js';

interface PlaceOrderBody {
  readonly id?: unknown;
  readonly sku?: unknown;
  readonly quantity?: unknown;
}

/**
 * The order service's HTTP API. Each write changes the order and adds its message in one
 * transaction: both commit, or neither does.
 */
@Controller('orders')
export class OrdersController {
  // Explicit tokens: DI by parameter type needs emitDecoratorMetadata and value imports, which
  // esbuild, swc without its option, and lint fixes to `import type` all quietly take away.
  constructor(
    @Inject(KYSELY) private readonly db: Kysely<ExampleDatabase>,
    @Inject(OutboxService) private readonly outbox: OutboxService,
    @Inject(LatencyRecorder) private readonly latency: LatencyRecorder,
  ) {}

  /** Places an order; the client may choose its id, so that a retried POST is refused. */
  @Post()
  @HttpCode(201)
  async place(@Body() body: PlaceOrderBody): Promise<{ id: string }> {
    const { sku, quantity } = body;
    const id = body.id ?? crypto.randomUUID();
    if (typeof id !== 'string' || typeof sku !== 'string' || !Number.isInteger(quantity)) {
      throw new BadRequestException('expected { id?: string, sku: string, quantity: integer }');
    }
    trace.getActiveSpan()?.setAttribute('order.id', id);
    try {
      // The message's headers carry this span's context: the relay's publish span, and
      // through it the inventory's, continue this trace.
      await inSpan('write order + outbox message', { 'order.id': id }, () =>
        this.db.transaction().execute(async (trx) => {
          await trx
            .insertInto('orders')
            .values({ id, sku, quantity: quantity as number, status: 'placed' })
            .execute();
          await this.outbox.add(trx, OrderPlaced, {
            kind: 'placed',
            orderId: id,
            sku,
            quantity: quantity as number,
          });
        }),
      );
    } catch (error) {
      if ((error as { code?: string }).code === '23505') {
        throw new ConflictException(`order ${id} exists`);
      }
      throw error;
    }
    this.latency.committed(id);
    return { id };
  }

  /** Cancels an order; the inventory releases its stock once it has reserved it. */
  @Post(':id/cancel')
  @HttpCode(200)
  async cancel(@Param('id') id: string): Promise<{ id: string; status: 'cancelled' }> {
    const cancelled = await this.db.transaction().execute(async (trx) => {
      const row = await trx
        .updateTable('orders')
        .set({ status: 'cancelled' })
        .where('id', '=', id)
        .where('status', '!=', 'cancelled')
        .returning('id')
        .executeTakeFirst();
      if (row) await this.outbox.add(trx, OrderCancelled, { kind: 'cancelled', orderId: id });
      return row !== undefined;
    });
    if (!cancelled) throw new NotFoundException(`no open order ${id}`);
    return { id, status: 'cancelled' };
  }

  /**
   * Publishes `order.placed` again for an order, as an upstream job that delivers at least once
   * would after a retry. The inventory deduplicates it by order id.
   */
  @Post(':id/announce')
  @HttpCode(202)
  async announce(@Param('id') id: string): Promise<{ id: string }> {
    const found = await this.db.transaction().execute(async (trx) => {
      const order = await trx
        .selectFrom('orders')
        .select(['sku', 'quantity'])
        .where('id', '=', id)
        .executeTakeFirst();
      if (order) {
        await this.outbox.add(trx, OrderPlaced, { kind: 'placed', orderId: id, ...order });
      }
      return order !== undefined;
    });
    if (!found) throw new NotFoundException(`no order ${id}`);
    return { id };
  }
}
