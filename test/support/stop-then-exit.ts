/**
 * Run as a child process by test/process-exit.test.ts: starts a relay (`relay`) or the Nest
 * module with only the relay and a status read (`nest`), lets one message through, stops, and
 * prints `stopped` when the stop resolved. Nothing should keep the process up after that.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { OutboxModule, OutboxService } from '../../src/nestjs/index.js';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { silentLogger } from '../../src/util/logger.js';
import { OutboxWriter } from '../../src/writer/outbox-writer.js';
import { AMQP_URL, DATABASE_URL } from './env.js';
import { testDatabase } from './test-database.js';
import { waitFor } from './wait-for.js';

const mode = process.argv[2];
const t = await testDatabase('exit');
const writer = new OutboxWriter({ schema: t.schema });
// amq.direct always exists; nothing is bound, so the message is returned and parked: it went.
await t.db
  .transaction()
  .execute((trx) =>
    writer.add(trx, { exchange: 'amq.direct', routingKey: 'nowhere', payload: {} }),
  );
const outboxEmpty = async () =>
  (await t.pool.query(`SELECT 1 FROM "${t.schema}".outbox`)).rowCount === 0;

if (mode === 'relay') {
  const relay = new OutboxRelay({
    databaseUrl: DATABASE_URL,
    amqpUrl: AMQP_URL,
    schema: t.schema,
    logger: silentLogger,
  });
  await relay.start();
  await waitFor('the message relayed', outboxEmpty, 20_000);
  await relay.stop();
} else {
  @Module({
    imports: [
      OutboxModule.forRoot({
        databaseUrl: DATABASE_URL,
        amqpUrl: AMQP_URL,
        schema: t.schema,
        consumers: false,
        logger: silentLogger,
      }),
    ],
  })
  class AppModule {}
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  await app.get(OutboxService).outboxStatus();
  await waitFor('the message relayed', outboxEmpty, 20_000);
  await app.close();
}
await t.close();
console.log('stopped');
