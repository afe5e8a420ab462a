import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Injectable, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import * as amqp from 'amqplib';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { OutboxHealthIndicator } from '../src/nestjs/health/index.js';
import {
  defineMessage,
  OutboxHandler,
  OutboxModule,
  type OutboxModuleOptions,
  OutboxService,
  PermanentError,
} from '../src/nestjs/index.js';
import { AMQP_URL } from './support/env.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { readOnlyRole } from './support/read-only-role.js';
import { refused } from './support/refused.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

const Doomed = defineMessage<{ n: number }>({ exchange: 'doomed', routingKey: 'doomed' });

@Injectable()
class DoomedHandler {
  @OutboxHandler(Doomed, { name: 'health.doomed', queueType: 'classic' })
  async handle(): Promise<void> {
    throw new PermanentError('cannot ever work');
  }
}

describe('nestjs: the terminus health indicator', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('nhealth');
  });
  after(() => f.close());

  async function boot(options: OutboxModuleOptions) {
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule.forRoot({ logger: false }), OutboxModule.forRoot(options)],
      providers: [OutboxHealthIndicator, DoomedHandler],
    }).compile();
    return f.init(moduleRef);
  }

  it('reports connectivity, lag, parked and dead-lettered counts, and goes down past the limits', async () => {
    const app = await boot(f.options());
    const indicator = app.get(OutboxHealthIndicator);
    // The relay connects in the background: down until then.
    await waitFor('the relay connected', () => app.get(OutboxService).relay?.isConnected);
    assert.deepEqual(await indicator.isHealthy(), {
      outbox: {
        status: 'up',
        relay: 'connected',
        consumers: 'connected',
        pending: 0,
        lagSeconds: 0,
        retrying: 0,
        parked: 0,
        deadLettered: 0,
      },
    });

    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.addMany(trx, Doomed, [{ n: 1 }, { n: 2 }]));
    // A row the relay gave up on, as it leaves one in the parked table.
    await f.t.pool.query(
      `INSERT INTO "${f.t.schema}".outbox_parked (id, message_id, exchange, routing_key, payload,
         content_type, created_at, attempts, last_error, reason)
       VALUES (1, 'parked-1', 'nowhere', 'x', '\\x31', 'application/json', now(), 10, 'boom',
         'gave up after 10 attempts: boom')`,
    );
    await waitFor('dead-lettered and parked', async () => {
      const { outbox: s } = await indicator.isHealthy();
      return s.deadLettered === 2 && s.parked === 1;
    });

    // A misspelt limit would turn its check off: refused, with the name meant.
    await assert.rejects(
      indicator.isHealthy('messaging', { maxParkd: 0 } as never),
      refused(
        'maxParkd',
        /not an option of OutboxHealthIndicator\.isHealthy; did you mean `maxParked`/,
      ),
    );
    // A limit that is not a whole number from 0 up: refused, where it turned its check off
    // ('5s' said up at any lag) or kept the indicator down (-1).
    for (const [option, value] of [
      ['maxLagSeconds', '5s'],
      ['maxLagSeconds', -1],
      ['maxParked', 1.5],
      ['maxDeadLettered', 'many'],
    ] as const) {
      await assert.rejects(
        indicator.isHealthy('messaging', { [option]: value } as never),
        refused(option, /must be a whole number from 0 up/),
      );
    }
    const limits = { maxDeadLettered: 1, maxParked: 0 };
    const down = await indicator.isHealthy('messaging', limits);
    assert.equal(down.messaging.status, 'down');
    assert.deepEqual(down.messaging.problems, ['1 rows parked', '2 messages dead-lettered']);

    // Through terminus, a down indicator is a 503 with the details.
    const health = app.get(HealthCheckService);
    await assert.rejects(
      health.check([() => indicator.isHealthy('messaging', limits)]),
      (error: unknown) => {
        assert.ok(error instanceof ServiceUnavailableException);
        const body = error.getResponse() as { error: Record<string, { status: string }> };
        assert.equal(body.error.messaging?.status, 'down');
        return true;
      },
    );
    await f.closeApp(app);
  });

  it('measures the lag as how long the oldest due row has waited', async () => {
    const app = await boot(f.options({ relay: false, consumers: false }));
    const outbox = app.get(OutboxService);
    await f.t.db.transaction().execute((trx) => outbox.add(trx, Doomed, { n: 3 }));
    // Scheduled an hour ahead: pending, but no lag.
    await f.t.db
      .transaction()
      .execute((trx) => outbox.add(trx, Doomed, { n: 4 }, { delayMs: 3_600_000 }));
    const early = await app.get(OutboxHealthIndicator).isHealthy('outbox', { maxLagSeconds: 60 });
    assert.equal(early.outbox.status, 'up', JSON.stringify(early));
    assert.equal(early.outbox.pending, 2);
    // The first row written and due 2 minutes ago, not yet published.
    await f.t.pool.query(
      `UPDATE "${f.t.schema}".outbox
       SET created_at = now() - interval '2 minutes', available_at = now() - interval '2 minutes'
       WHERE available_at <= now()`,
    );
    const result = await app.get(OutboxHealthIndicator).isHealthy('outbox', { maxLagSeconds: 60 });
    assert.equal(result.outbox.status, 'down');
    assert.equal(result.outbox.relay, 'off');
    assert.equal(result.outbox.pending, 2);
    assert.ok(result.outbox.lagSeconds >= 120);
    assert.match(result.outbox.problems[0], /the relay lags 12\d(\.\d+)? s behind/);
    await f.t.pool.query(`DELETE FROM "${f.t.schema}".outbox`);
    await f.closeApp(app);
  });

  // During a stop, the parts' connections close on purpose: a probe then blamed RabbitMQ, and
  // Terminus logged it at error level, on every rolling deploy.
  it('says the outbox is not running, not that RabbitMQ was lost, once it stops', async () => {
    const app = await boot(f.options());
    const indicator = app.get(OutboxHealthIndicator);
    await waitFor('connected', async () => (await indicator.isHealthy()).outbox.status === 'up');
    await f.closeApp(app);
    const { outbox } = await indicator.isHealthy('outbox', { timeoutMs: 1000 });
    assert.equal(outbox.status, 'down');
    assert.ok(outbox.problems.includes('the outbox is not running'), JSON.stringify(outbox));
    const blamed = outbox.problems.filter((p: string) => /RabbitMQ/.test(p));
    assert.deepEqual(blamed, []);
  });

  it('goes down when RabbitMQ is lost', async () => {
    const broker = new URL(AMQP_URL);
    const proxy = await TcpProxy.start(broker.hostname, Number(broker.port || 5672));
    try {
      const app = await boot(f.options({ amqpUrl: proxy.url(AMQP_URL) }));
      const indicator = app.get(OutboxHealthIndicator);
      await waitFor('connected', async () => (await indicator.isHealthy()).outbox.status === 'up');
      await proxy.close();
      const lost = await waitFor('down', async () => {
        const { outbox } = await indicator.isHealthy('outbox', { timeoutMs: 1000 });
        return outbox.relay === 'disconnected' && outbox.consumers === 'disconnected'
          ? outbox
          : undefined;
      });
      assert.equal(lost.status, 'down');
      assert.ok(lost.problems.some((p: string) => p.includes('the relay cannot publish')));
      assert.ok(lost.problems.some((p: string) => p.includes('dead-letter queues unavailable')));
      await f.closeApp(app);
    } finally {
      await proxy.close().catch(() => {});
    }
  });
  // Kubernetes gives a probe 1 s by default; an indicator that waits 5 s for a hung service
  // fails every probe by timeout instead of answering "down" with the reason.
  it('answers within its default 2 s while RabbitMQ or Postgres hangs', async () => {
    const broker = new URL(AMQP_URL);
    const proxy = await TcpProxy.start(broker.hostname, Number(broker.port || 5672));
    const locker = await f.t.pool.connect();
    try {
      const app = await boot(f.options({ amqpUrl: proxy.url(AMQP_URL) }));
      const indicator = app.get(OutboxHealthIndicator);
      await waitFor('connected', async () => (await indicator.isHealthy()).outbox.status === 'up');
      // What a check needs on a healthy machine: a few ms, far below the default.
      let began = Date.now();
      await indicator.isHealthy();
      const healthyMs = Date.now() - began;
      assert.ok(healthyMs < 1_500, `a healthy check took ${healthyMs} ms`);

      proxy.pause();
      began = Date.now();
      const hung = (await indicator.isHealthy()).outbox;
      const brokerMs = Date.now() - began;
      assert.equal(hung.status, 'down');
      assert.ok(
        hung.problems.some((p: string) =>
          /dead-letter queues unavailable: .* took over 2000 ms/.test(p),
        ),
        JSON.stringify(hung.problems),
      );
      // Bounded by the 2 s default, well short of the 5 s the reads would wait without it.
      assert.ok(brokerMs >= 1_900 && brokerMs < 4_500, `took ${brokerMs} ms with RabbitMQ hung`);

      // The status statement waits behind this lock, as behind a stalled database.
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE "${f.t.schema}".outbox_parked IN ACCESS EXCLUSIVE MODE`);
      began = Date.now();
      const stalled = (await indicator.isHealthy()).outbox;
      const bothMs = Date.now() - began;
      assert.ok(
        stalled.problems.some((p: string) =>
          /outbox status unavailable: .* took over 2000 ms/.test(p),
        ),
        JSON.stringify(stalled.problems),
      );
      assert.ok(bothMs < 4_500, `took ${bothMs} ms with both hung`);
      // Probes that come while the first read still hangs wait for it rather than stack their
      // own statements on the application's pool. Counted in this schema only: other test
      // files lock their own outbox_parked at the same time.
      for (let i = 0; i < 3; i += 1) await indicator.isHealthy('outbox', { timeoutMs: 200 });
      const { rows } = await f.t.pool.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
         WHERE wait_event_type = 'Lock' AND position($2 in query) > 0 AND pid <> $1`,
        [(locker as unknown as { processID: number }).processID, `"${f.t.schema}".outbox_parked`],
      );
      assert.equal(rows[0].n, 1, 'status statements waiting behind the lock');
      await locker.query('ROLLBACK');
      proxy.heal();
      await f.closeApp(app);
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      locker.release();
      await proxy.close().catch(() => {});
    }
  });
  // A standby, or a database under default_transaction_read_only, answers the status read (a
  // plain SELECT): the indicator said "up" while neither the relay nor the handlers could write.
  it('goes down, naming the read-only database, while the relay and the handlers cannot write', async () => {
    const role = await readOnlyRole(f.t.pool, f.t.schema);
    // Sessions keep the read-only they began with: replaced once a second old, as docs advise.
    const pool = new pg.Pool({ connectionString: role.url, max: 6, maxLifetimeSeconds: 1 });
    pool.on('error', () => {});
    pool.on('connect', (client) => client.on('error', () => {}));
    const db = new Kysely({ dialect: new PostgresDialect({ pool }) });
    const publisher = await amqp.connect(AMQP_URL);
    try {
      const app = await boot(f.options({ db, databaseUrl: role.url }));
      const indicator = app.get(OutboxHealthIndicator);
      const outbox = app.get(OutboxService);
      await waitFor('connected', async () => (await indicator.isHealthy()).outbox.status === 'up');
      // A row for the relay (written as the test's writable role), a delivery for the handler.
      await f.t.db.transaction().execute((trx) => outbox.add(trx, Doomed, { n: 1 }));
      const channel = await publisher.createConfirmChannel();
      const [topology] = outbox.topologies;
      assert.ok(topology, 'the handler’s topology');
      channel.publish(topology.exchange, 'doomed', Buffer.from('{"n":2}'), {
        messageId: 'read-only-2',
        contentType: 'application/json',
      });
      await channel.waitForConfirms();
      const down = await waitFor(
        'down',
        async () => {
          const { outbox: s } = await indicator.isHealthy();
          return s.relayDatabase !== undefined && s.waitingForDatabase !== undefined
            ? s
            : undefined;
        },
        10_000,
      );
      assert.equal(down.status, 'down');
      assert.equal(down.relayDatabase, 'read-only');
      assert.equal(down.waitingForDatabase, 1);
      const problems = down.problems as string[];
      assert.ok(
        problems.some((p) => /^the relay cannot use the database .*read-only/.test(p)),
        JSON.stringify(problems),
      );
      assert.ok(
        problems.some((p) =>
          new RegExp(
            `^the handlers of ${f.name('health.doomed')} wait for the database .*read-only`,
          ).test(p),
        ),
        JSON.stringify(problems),
      );
      // Writable again: up, the relay and the handlers' pool (by its maxLifetimeSeconds) past
      // their read-only sessions.
      await role.reset();
      await waitFor(
        'up again',
        async () => (await indicator.isHealthy()).outbox.status === 'up',
        10_000,
      );
      await f.closeApp(app);
    } finally {
      await publisher.close().catch(() => {});
      await db.destroy();
      await role.drop();
    }
  });
});
