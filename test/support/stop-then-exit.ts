/**
 * Run as a child process by test/process-exit.test.ts: starts a relay (`relay`) or the Nest
 * module with only the relay and a status read (`nest`), lets one message through, stops, and
 * prints `stopped` when the stop resolved. Nothing should keep the process up after that.
 * `hung-handler`: a consumer host whose handler never settles, stopped past its stop deadline.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import amqp from 'amqplib';
import type { ConsumerDefinition } from '../../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../../src/consumer/consumer-host.js';
import { OutboxModule, OutboxService } from '../../src/nestjs/index.js';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import { deleteConsumerQueues } from '../../src/testing/delete-consumer-queues.js';
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

if (mode === 'hung-handler') {
  const name = `${t.schema}.hung`;
  let started = false;
  const hung: ConsumerDefinition = {
    name,
    exchange: `${t.schema}.events`,
    routingKeys: ['#'],
    queueType: 'classic',
    // Far beyond the stop deadline: its timer must not outlive the stop.
    timeoutMs: 20_000,
    handler: () => {
      started = true;
      return new Promise<void>(() => {});
    },
  };
  const host = new ConsumerHost({
    db: t.db,
    amqpUrl: AMQP_URL,
    schema: t.schema,
    consumers: [hung],
    stopTimeoutMs: 300,
    retention: false,
    logger: silentLogger,
  });
  await host.start();
  const connection = await amqp.connect(AMQP_URL);
  const channel = await connection.createConfirmChannel();
  channel.publish(hung.exchange, 'x', Buffer.from('{}'), {
    contentType: 'application/json',
    messageId: 'hung-1',
  });
  await channel.waitForConfirms();
  await waitFor('the handler to start', async () => started, 20_000);
  await host.stop();
  await channel.deleteExchange(hung.exchange);
  await connection.close();
  await deleteConsumerQueues(AMQP_URL, [hung]);
} else if (mode === 'relay') {
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
