import { Module } from '@nestjs/common';
import { ConfirmationHandler } from './confirmation.handler.js';
import { OrdersController } from './orders.controller.js';

/** The order service: places and cancels orders, and confirms them once stock is reserved. */
@Module({ controllers: [OrdersController], providers: [ConfirmationHandler] })
export class OrdersModule {}
