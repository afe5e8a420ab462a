// biome-ignore-all lint/correctness/noUnusedVariables: a prelude declares what the snippets use
// biome-ignore-all lint/correctness/noUnusedImports: a prelude imports what the snippets use
// The imports and the message of docs/orm.md's Nest fragments (compiled, not run: the module
// around them is docs/nestjs.md's; test/nestjs-orm.test.ts runs the same wiring).
import { Global, Injectable, Module } from '@nestjs/common';
import { ClsPluginTransactional, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { ClsModule } from 'nestjs-cls';
import { defineMessage, OutboxModule, OutboxService } from 'outboxkit/nestjs';
import { clsOutbox } from 'outboxkit/nestjs-cls';
import { typeormConsumerTransactions, typeormTransaction } from 'outboxkit/typeorm';
import { DataSource } from 'typeorm';

const OrderPlaced = defineMessage<{ orderId: number }>({
  exchange: 'orders',
  routingKey: 'order.placed',
});
