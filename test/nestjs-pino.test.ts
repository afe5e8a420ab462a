import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type INestApplication, Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { Logger, LoggerModule, PinoLogger } from 'nestjs-pino';
import { defineMessage, OutboxHandler, OutboxModule, OutboxService } from '../src/nestjs/index.js';
import { type PinoLike, pinoOutboxLogger } from '../src/pino/index.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { waitFor } from './support/wait-for.js';

// Compile-time: nestjs-pino's PinoLogger fits what outboxkit/pino asks of a logger.
const _fits = (logger: PinoLogger): PinoLike => logger;

type Line = Record<string, unknown> & { msg?: string; level?: number };

/** Every line nestjs-pino writes, parsed: pino's destination is this process's memory. */
const lines: Line[] = [];
const destination = { write: (line: string) => void lines.push(JSON.parse(line) as Line) };

const Invoice = defineMessage<{ n: number }>({ exchange: 'invoices', routingKey: 'invoice' });

@Injectable()
class InvoiceHandler {
  static handled: number[] = [];

  @OutboxHandler(Invoice, { name: 'npino.invoices', queueType: 'classic' })
  async handle(payload: { n: number }): Promise<void> {
    InvoiceHandler.handled.push(payload.n);
  }
}

function lineWith(msg: string): Line | undefined {
  return lines.find((l) => l.msg === msg && l.component === 'outboxkit');
}

describe('nestjs-pino: outboxkit logs in the application’s pino logger', () => {
  let f: NestFixture;
  let app: INestApplication;
  let base: string;

  before(async () => {
    f = await NestFixture.open('npino');
    const moduleRef = await Test.createTestingModule({
      imports: [
        LoggerModule.forRoot({
          pinoHttp: [
            { level: 'debug', base: { service: 'orders' }, autoLogging: false },
            destination,
          ],
        }),
        OutboxModule.forRootAsync({
          inject: [PinoLogger],
          useFactory: (logger: PinoLogger) => {
            logger.setContext('Outbox');
            return f.options({ logger: pinoOutboxLogger(logger) });
          },
          dashboard: true,
        }),
      ],
      providers: [InvoiceHandler],
    }).compile();
    app = moduleRef.createNestApplication({ bufferLogs: true });
    app.useLogger(app.get(Logger));
    await f.init(app);
    await app.listen(0, '127.0.0.1');
    base = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });
  after(() => f.close());

  it('keeps outboxkit’s context as JSON fields beside the application’s own', async () => {
    const relay = lineWith('relay started');
    assert.ok(relay, `no "relay started" line in ${JSON.stringify(lines)}`);
    assert.equal(relay.level, 30);
    assert.equal(relay.service, 'orders', 'the application’s base fields');
    assert.equal(relay.context, 'Outbox', 'the PinoLogger’s context');
    assert.equal(relay.schema, f.t.schema);
    assert.equal(relay.concurrency, 2);
    assert.equal(typeof relay.batchSize, 'number');
    assert.equal(relay.req, undefined, 'started outside any request');

    const consumers = lineWith('consumers started');
    assert.ok(consumers);
    assert.deepEqual(consumers.consumers, [f.name('npino.invoices')]);
    for (const line of lines.filter((l) => l.component === 'outboxkit')) {
      assert.doesNotMatch(line.msg ?? '', /\{/, 'no context stringified into the message');
    }

    // The consumer's path logs through it too: a handled message leaves no warning behind.
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Invoice, { n: 1 }));
    await waitFor('the message handled', () => InvoiceHandler.handled.includes(1));
    assert.deepEqual(
      lines.filter((l) => l.component === 'outboxkit' && (l.level ?? 0) >= 40),
      [],
    );
  });

  it('carries the request’s `req` on a line logged while serving a request', async () => {
    // The dashboard's status then fails on the database, and outboxkit warns inside the request.
    await f.query(`ALTER TABLE ${f.t.schema}.outbox_parked RENAME TO outbox_parked_away`);
    try {
      const res = await fetch(`${base}/outbox/dashboard/api/status`);
      assert.equal(res.status, 500, await res.text());
    } finally {
      await f.query(`ALTER TABLE ${f.t.schema}.outbox_parked_away RENAME TO outbox_parked`);
    }
    const failed = lineWith('dashboard request failed');
    assert.ok(failed, `no "dashboard request failed" line in ${JSON.stringify(lines)}`);
    assert.equal(failed.level, 40);
    // The status read names the fix, as `outboxkit status` does: the table is missing.
    assert.match(String(failed.error), /outboxkit migrate/);
    assert.equal(failed.service, 'orders');
    assert.equal(failed.context, 'Outbox');
    const req = failed.req as { id?: unknown; method?: string; url?: string } | undefined;
    assert.ok(req, 'nestjs-pino’s request binding');
    assert.equal(req.method, 'GET');
    assert.equal(req.url, '/outbox/dashboard/api/status');
    assert.notEqual(req.id, undefined);
  });
});
