import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Channel, ChannelModel } from 'amqplib';
import * as amqp from 'amqplib';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { declareExchanges } from '../../src/amqp/declare-exchanges.js';
import { defineConsumer } from '../../src/consumer/consumer-definition.js';
import { ConsumerHost, type ConsumerHostOptions } from '../../src/consumer/consumer-host.js';
import { resizePartitions } from '../../src/consumer/resize-partitions.js';
import { StartupError } from '../../src/errors/startup-error.js';
import { migrate } from '../../src/migrate/migrate.js';
import {
  defineMessage,
  OutboxHandler,
  OutboxModule,
  OutboxService,
} from '../../src/nestjs/index.js';
import type { TlsOptions } from '../../src/options/tls-options.js';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import type { RelayOptions } from '../../src/relay/relay-options.js';
import { silentLogger } from '../../src/util/logger.js';
import { OutboxWriter } from '../../src/writer/outbox-writer.js';
import { CLI_MAIN, NodeChild } from '../support/child-process.js';
import { uniqueName } from '../support/test-database.js';
import { TlsServices } from '../support/tls-services.js';
import { waitFor } from '../support/wait-for.js';

const SCHEMA = 'outboxkit_tls';
/** Rows of each test: enough to span several batches of the quick settings below. */
const ROWS = 20;

const quick = {
  schema: SCHEMA,
  pollIntervalMs: 100,
  batchSize: 5,
  heartbeatSeconds: 2,
  publishTimeoutMs: 5000,
  reconnectBackoff: { initialMs: 20, maxMs: 200 },
  logger: silentLogger,
} satisfies Partial<RelayOptions>;

const hostQuick = {
  schema: SCHEMA,
  heartbeatSeconds: 2,
  publishTimeoutMs: 5000,
  startTimeoutMs: 10_000,
  reconnectBackoff: { initialMs: 20, maxMs: 200 },
  retention: false,
  logger: silentLogger,
} satisfies Partial<ConsumerHostOptions>;

describe('TLS: amqps:// and Postgres over TLS with client certificates', () => {
  let s: TlsServices;
  /** The test's own pool on the TLS-only Postgres. */
  let pool: pg.Pool;
  // biome-ignore lint/suspicious/noExplicitAny: the test's own tables
  let db: Kysely<any>;
  let broker: ChannelModel;
  let channel: Channel;
  const writer = new OutboxWriter({ schema: SCHEMA });
  const children = new Set<NodeChild>();

  /** The CA and client certificate the servers expect. */
  const tls = (): TlsOptions => ({
    ca: s.certificates.ca,
    cert: s.certificates.clientCert,
    key: s.certificates.clientKey,
  });

  before(async () => {
    s = await TlsServices.start();
    pool = new pg.Pool({
      connectionString: s.databaseUrl('outboxkit-tls-test'),
      ssl: {
        ca: s.certificates.ca,
        cert: s.certificates.clientCert,
        key: s.certificates.clientKey,
      },
      max: 4,
    });
    pool.on('error', () => {});
    await migrate(pool, { schema: SCHEMA });
    await pool.query(`CREATE TABLE ${SCHEMA}.effects (key text PRIMARY KEY)`);
    db = new Kysely({ dialect: new PostgresDialect({ pool }) });
    broker = await amqp.connect(s.amqpsUrl, {
      ca: s.certificates.ca,
      cert: s.certificates.clientCert,
      key: s.certificates.clientKey,
    });
    broker.on('error', () => {});
    channel = await broker.createChannel();
    channel.on('error', () => {});
  });
  after(async () => {
    for (const child of children) child.kill();
    await broker?.close().catch(() => {});
    await db?.destroy();
    await s?.destroy();
  });

  /** A fresh exchange with a queue bound to it, for one test. */
  async function route(): Promise<{ exchange: string; queue: string }> {
    const exchange = uniqueName('tls');
    const queue = `${exchange}.q`;
    await channel.assertExchange(exchange, 'topic', { durable: false });
    await channel.assertQueue(queue, { durable: false });
    await channel.bindQueue(queue, exchange, '#');
    return { exchange, queue };
  }

  async function write(exchange: string, n = ROWS): Promise<void> {
    await db.transaction().execute((trx) =>
      writer.addMany(
        trx,
        Array.from({ length: n }, (_, i) => ({ exchange, routingKey: 'k', payload: { i } })),
      ),
    );
  }

  const outboxRows = async () =>
    Number((await pool.query(`SELECT count(*) AS n FROM ${SCHEMA}.outbox`)).rows[0].n);
  const depth = async (queue: string) => (await channel.checkQueue(queue)).messageCount;

  /** Sessions of `applicationName` over TLS with the client certificate, and all of them. */
  async function tlsSessions(applicationName: string): Promise<{ tls: number; all: number }> {
    const { rows } = await pool.query(
      `SELECT count(*) FILTER (WHERE s.ssl AND s.client_dn = '/CN=postgres')::int AS tls,
              count(*)::int AS all
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
        WHERE a.application_name = $1`,
      [applicationName],
    );
    return rows[0] as { tls: number; all: number };
  }

  it('the relay publishes over amqps:// and deletes the rows after the confirms, on a Postgres it reaches over TLS', async () => {
    const { exchange, queue } = await route();
    await write(exchange);
    const relay = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      databaseTls: tls(),
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
      connectionName: 'outboxkit-tls-relay',
    });
    await relay.start();
    try {
      await waitFor('the outbox drained', async () => (await outboxRows()) === 0);
      await waitFor(`${ROWS} messages queued`, async () => (await depth(queue)) === ROWS);
      await waitFor('all counted published', () => relay.stats().published === ROWS);
      // Every session of the relay is a TLS one, with the client certificate.
      const sessions = await tlsSessions('outboxkit-relay');
      assert.ok(sessions.all > 0);
      assert.equal(sessions.tls, sessions.all);
      // The broker saw the relay's connection over TLS, with the client certificate.
      const connections = await s.rabbitmq.ctl(
        'list_connections',
        '-q',
        'ssl',
        'peer_cert_subject',
        'client_properties',
      );
      const line = connections.split('\n').find((l) => l.includes('outboxkit-tls-relay'));
      assert.match(line ?? connections, /^true\tCN=postgres\t/);
    } finally {
      await relay.stop();
    }
  });

  it('a consumer host consumes over amqps:// and applies its effects in Postgres over TLS', async () => {
    const exchange = uniqueName('tls');
    const consumer = defineConsumer<{ i: number }>({
      name: `${exchange}.effects`,
      exchange,
      queueType: 'classic',
      async handler(payload, { trx }) {
        await trx
          .insertInto(`${SCHEMA}.effects`)
          .values({ key: `${exchange}.${payload.i}` })
          .execute();
      },
    });
    const host = new ConsumerHost({
      ...hostQuick,
      db,
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
      consumers: [consumer],
    });
    await host.start();
    const relay = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      databaseTls: tls(),
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
    });
    await relay.start();
    try {
      await write(exchange);
      await waitFor(`${ROWS} effects`, async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n FROM ${SCHEMA}.effects WHERE key LIKE $1`,
          [`${exchange}.%`],
        );
        return rows[0].n === ROWS;
      });
      // Counted once acked, a moment after the commit.
      await waitFor('all handled', () => host.stats(consumer.name).handled === ROWS);
      assert.equal(host.stats(consumer.name).duplicates, 0);
    } finally {
      await relay.stop();
      await host.stop();
    }
  });

  it('outboxkit relay takes the certificates as --amqp-ca/--amqp-cert/--amqp-key and --database-ca/--database-cert/--database-key files', async () => {
    const { exchange, queue } = await route();
    await write(exchange);
    const files = s.certificates.files;
    const relay = new NodeChild(
      CLI_MAIN,
      [
        'relay',
        '--schema',
        SCHEMA,
        '--poll-interval',
        '100ms',
        '--amqp-ca',
        files.ca,
        '--amqp-cert',
        files.clientCert,
        '--amqp-key',
        files.clientKey,
        '--database-ca',
        files.ca,
        '--database-cert',
        files.clientCert,
        '--database-key',
        files.clientKey,
      ],
      { ...process.env, DATABASE_URL: s.databaseUrl(), AMQP_URL: s.amqpsUrl },
    );
    children.add(relay);
    await waitFor('the outbox drained', async () => {
      assert.ok(relay.running, `relay exited: ${relay.stderr}`);
      return (await outboxRows()) === 0;
    });
    await waitFor(`${ROWS} messages queued`, async () => (await depth(queue)) === ROWS);
    assert.equal((await relay.stop()).code, 0);
    assert.doesNotMatch(relay.stderr, /TLS failed/);
  });

  it('outboxkit relay: a certificate file it cannot read, or TLS files with an amqp:// URL, is a usage error naming the flag', async () => {
    const relay = new NodeChild(
      CLI_MAIN,
      ['relay', '--amqp-ca', `${s.certificates.dir}/missing.pem`],
      { ...process.env, DATABASE_URL: s.databaseUrl(), AMQP_URL: s.amqpsUrl },
    );
    children.add(relay);
    assert.equal((await relay.exited()).code, 2);
    assert.match(relay.stderr, /--amqp-ca \S+\/missing\.pem: cannot read it \(ENOENT/);

    const notPem = new NodeChild(CLI_MAIN, ['relay'], {
      ...process.env,
      DATABASE_URL: s.databaseUrl(),
      AMQP_URL: s.amqpsUrl,
      // A file that exists but holds no certificate.
      DATABASE_CA: `${s.certificates.dir}/server.ext`,
    });
    children.add(notPem);
    assert.equal((await notPem.exited()).code, 2);
    assert.match(notPem.stderr, /DATABASE_CA \S+\/server\.ext: not a PEM file/);

    // TLS settings with a plain amqp:// URL: refused, not ignored.
    const plain = new NodeChild(CLI_MAIN, ['relay', '--amqp-ca', s.certificates.files.ca], {
      ...process.env,
      DATABASE_URL: s.databaseUrl(),
      AMQP_URL: s.amqpUrl,
    });
    children.add(plain);
    assert.equal((await plain.exited()).code, 2);
    assert.match(
      plain.stderr,
      /--amqp-ca\/--amqp-cert\/--amqp-key applies to amqps:\/\/ URLs, and amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+ is not one/,
    );
  });

  it('outboxkit relay with the wrong CA exits with status 1 and the TLS failure, instead of retrying for ever', async () => {
    const relay = new NodeChild(CLI_MAIN, ['relay', '--schema', SCHEMA], {
      ...process.env,
      DATABASE_URL: s.databaseUrl(),
      AMQP_URL: s.amqpsUrl,
      DATABASE_CA: s.certificates.files.ca,
      DATABASE_CERT: s.certificates.files.clientCert,
      DATABASE_KEY: s.certificates.files.clientKey,
      AMQP_CA: s.certificates.files.otherCa,
      AMQP_CERT: s.certificates.files.clientCert,
      AMQP_KEY: s.certificates.files.clientKey,
    });
    children.add(relay);
    assert.equal((await relay.exited()).code, 1);
    assert.match(
      relay.stderr,
      /outboxkit relay: RabbitMQ at amqps:\/\/guest:\*\*\*@127\.0\.0\.1:\d+: TLS failed: .+ \([A-Z_]+\): the server's certificate was refused/,
    );
  });

  it('the Nest module relays and consumes with amqpTls and databaseTls', async () => {
    const prefix = `${uniqueName('nest')}.`;
    const Ping = defineMessage<{ n: number }>({ exchange: 'pings', routingKey: 'ping' });
    @Injectable()
    class PingHandler {
      readonly seen: number[] = [];
      @OutboxHandler(Ping, { name: 'tls.pings', queueType: 'classic' })
      async handle(ping: { n: number }): Promise<void> {
        this.seen.push(ping.n);
      }
    }
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot({
          databaseUrl: s.databaseUrl(),
          databaseTls: tls(),
          amqpUrl: s.amqpsUrl,
          amqpTls: tls(),
          schema: SCHEMA,
          prefix,
          relay: { pollIntervalMs: 100, reconnectBackoff: { initialMs: 20, maxMs: 200 } },
          consumers: { retention: false, reconnectBackoff: { initialMs: 20, maxMs: 200 } },
          logger: false,
        }),
      ],
      providers: [PingHandler],
    }).compile();
    const app = await moduleRef.init();
    try {
      const outbox = app.get(OutboxService);
      await db
        .transaction()
        .execute((trx) => outbox.addMany(trx, Ping, [{ n: 1 }, { n: 2 }, { n: 3 }]));
      const handler = app.get(PingHandler);
      await waitFor('3 pings handled', () => handler.seen.length === 3);
      assert.deepEqual([...handler.seen].sort(), [1, 2, 3]);
      assert.ok(outbox.relay?.isConnected);
      const sessions = await tlsSessions('outboxkit-nestjs');
      assert.ok(sessions.all > 0);
      assert.equal(sessions.tls, sessions.all);
    } finally {
      await app.close();
    }
  });

  it('the Nest module with a wrong CA fails bootstrap with a StartupError', async () => {
    const Job = defineMessage<{ n: number }>({ exchange: 'jobs', routingKey: 'job' });
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot({
          databaseUrl: s.databaseUrl(),
          databaseTls: tls(),
          amqpUrl: s.amqpsUrl,
          amqpTls: { ...tls(), ca: s.certificates.otherCa },
          schema: SCHEMA,
          prefix: `${uniqueName('nest')}.`,
          exchanges: [Job],
          logger: false,
        }),
      ],
    }).compile();
    try {
      await assert.rejects(moduleRef.init(), (error: unknown) => {
        assert.ok(error instanceof StartupError, String(error));
        assert.equal(error.code, 'broker-tls-refused');
        assert.match(
          error.message,
          /TLS failed: .+ \([A-Z_]+\): the server's certificate was refused/,
        );
        return true;
      });
    } finally {
      await moduleRef.close();
    }
  });

  it('declareExchanges and resizePartitions connect with amqpTls', async () => {
    // Neither took TLS settings for its own connection (found by a probe): declareExchanges had
    // no such option, and resizePartitions connected without the amqpTls it was given.
    const exchange = uniqueName('tls');
    await declareExchanges(s.amqpsUrl, [{ name: exchange, type: 'topic' }], {
      amqpTls: tls(),
      timeoutMs: 10_000,
      logger: silentLogger,
    });
    await channel.checkExchange(exchange);
    await channel.deleteExchange(exchange);
    // This broker has no consistent-hash plugin: the resize gets as far as declaring the new set
    // only over a connection its TLS settings made.
    const { retention: _, ...resizeQuick } = hostQuick;
    const resized = resizePartitions({
      ...resizeQuick,
      db,
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
      consumer: defineConsumer({
        name: uniqueName('tls'),
        exchange: uniqueName('tls'),
        ordered: true,
        partitions: 3,
        async handler() {},
      }),
      from: 2,
    });
    await assert.rejects(resized, { code: 'partitions-plugin-missing' });
  });

  it('a wrong CA for RabbitMQ fails start with a StartupError naming the URL and the TLS reason', async () => {
    const relay = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      databaseTls: tls(),
      amqpUrl: s.amqpsUrl,
      amqpTls: { ...tls(), ca: s.certificates.otherCa },
    });
    await assert.rejects(relay.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'broker-tls-refused');
      assert.equal(error.service, 'rabbitmq');
      assert.match(
        error.message,
        /^RabbitMQ at amqps:\/\/guest:\*\*\*@127\.0\.0\.1:\d+: TLS failed: .+ \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\): .*`amqpTls\.ca`/,
      );
      return true;
    });
    assert.equal(relay.isRunning, false);

    const host = new ConsumerHost({
      ...hostQuick,
      db,
      amqpUrl: s.amqpsUrl,
      amqpTls: { ...tls(), ca: s.certificates.otherCa },
      consumers: [
        defineConsumer({
          name: uniqueName('tls'),
          exchange: uniqueName('tls'),
          async handler() {},
        }),
      ],
    });
    await assert.rejects(host.start(), { name: 'StartupError', code: 'broker-tls-refused' });
  });

  it('a broker that demands a client certificate, given none, fails start with a StartupError saying so', async () => {
    const relay = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      databaseTls: tls(),
      amqpUrl: s.amqpsUrl,
      amqpTls: { ca: s.certificates.ca },
    });
    await assert.rejects(relay.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'broker-tls-refused');
      assert.match(
        error.message,
        /TLS failed: tlsv13 alert certificate required \(ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED\): the TLS handshake failed: .*`amqpTls\.cert`/,
      );
      return true;
    });
  });

  it('a wrong CA for Postgres fails start with a StartupError; a login without TLS is refused by the server', async () => {
    const wrongCa = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      databaseTls: { ...tls(), ca: s.certificates.otherCa },
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
    });
    await assert.rejects(wrongCa.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-tls-refused');
      assert.equal(error.service, 'postgres');
      assert.match(
        error.message,
        /^Postgres at postgres:\/\/postgres@localhost:\d+\/postgres: TLS failed: .+ \([A-Z_]+\): .*`databaseTls\.ca`/,
      );
      return true;
    });

    // The hba file lets nothing in without TLS: the connections above really used it.
    const plain = new OutboxRelay({
      ...quick,
      databaseUrl: s.databaseUrl(),
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
    });
    await assert.rejects(plain.start(), (error: unknown) => {
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'database-auth-refused');
      assert.match(error.message, /no encryption.*over TLS only: give `databaseTls`/);
      return true;
    });
  });

  it('sslmode=verify-full with sslrootcert, sslcert and sslkey in the URL works without databaseTls', async () => {
    const url = new URL(s.databaseUrl());
    url.searchParams.set('sslmode', 'verify-full');
    url.searchParams.set('sslrootcert', s.certificates.files.ca);
    url.searchParams.set('sslcert', s.certificates.files.clientCert);
    url.searchParams.set('sslkey', s.certificates.files.clientKey);
    const { exchange, queue } = await route();
    await write(exchange, 3);
    const relay = new OutboxRelay({
      ...quick,
      databaseUrl: url.toString(),
      amqpUrl: s.amqpsUrl,
      amqpTls: tls(),
    });
    await relay.start();
    try {
      // The rows go once confirmed, which may be a moment after the messages are queued.
      await waitFor('the outbox drained', async () => (await outboxRows()) === 0);
      assert.equal(await depth(queue), 3);
    } finally {
      await relay.stop();
    }
  });
});
