import { Module } from '@nestjs/common';
import { InventoryHandler } from './inventory.handler.js';

/** The inventory service: reserves and releases stock as orders come and go. */
@Module({ providers: [InventoryHandler] })
export class InventoryModule {}
