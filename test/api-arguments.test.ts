import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import { defineConsumer } from '../src/consumer/consumer-definition.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { resizePartitions } from '../src/consumer/resize-partitions.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { RetentionCleaner } from '../src/consumer/retention-cleaner.js';
import { OutboxDashboard } from '../src/dashboard/outbox-dashboard.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { LatencyHistogram } from '../src/metrics/latency-histogram.js';
import { registerOpenTelemetryMetrics } from '../src/metrics/register-opentelemetry-metrics.js';
import { renderPrometheus } from '../src/metrics/render-prometheus.js';
import { combineMigrationProviders } from '../src/migrate/combine-migration-providers.js';
import { OutboxMigrationProvider } from '../src/migrate/kysely-migration-provider.js';
import { migrate } from '../src/migrate/migrate.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { registerPrometheusMetrics } from '../src/prometheus/register-prometheus-metrics.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { capturePublished } from '../src/testing/capture-published.js';
import { flushOutbox } from '../src/testing/flush-outbox.js';
import { waitForIdle } from '../src/testing/wait-for-idle.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { js, refused } from './support/refused.js';

const amqpUrl = 'amqp://localhost';

describe('public functions refuse a wrong argument at the call, naming it', () => {
  // Never connected: every refusal comes before a statement.
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
  after(() => pool.end());

  it('the relay refuses a pool or databaseUrl it could never use', () => {
    const relay = (options: object) => () => resolveRelayOptions(js({ amqpUrl, ...options }));
    assert.throws(relay({ pool: 'postgres://x/y' }), refused('pool', /pg Pool.*databaseUrl/));
    assert.throws(relay({ pool: {} }), refused('pool', /pg Pool/));
    assert.throws(relay({ databaseUrl: 123 }), refused('databaseUrl', /Postgres connection URL/));
    assert.throws(relay({ databaseUrl: 'not a url' }), refused('databaseUrl', /postgres:\/\//));
    assert.throws(
      relay({ databaseUrl: 'host=db dbname=app' }),
      refused('databaseUrl', /postgres:\/\//),
    );
    assert.throws(relay({ databaseUrl: 'mysql://x/y' }), refused('databaseUrl', /postgres:\/\//));
    assert.doesNotThrow(relay({ databaseUrl: 'postgresql://u:p@h:5432/d?sslmode=disable' }));
    // Forms pg reads that a WHATWG URL refuses: a Unix socket as the host parameter, socket:.
    assert.doesNotThrow(relay({ databaseUrl: 'postgresql://u:p@/d?host=/cloudsql/p:r:i' }));
    assert.doesNotThrow(relay({ databaseUrl: 'socket:/var/run/postgresql?db=app' }));
    assert.doesNotThrow(relay({ pool }));
    assert.throws(() => new OutboxRelay(js(undefined)), refused('options'));
    assert.throws(() => new OutboxRelay(js(null)), refused('options'));
    assert.throws(relay({ pool, connectionName: {} }), refused('connectionName'));
    assert.throws(relay({ pool, connectionName: '' }), refused('connectionName'));
  });

  it('the consumer host refuses a connectionName that is not a non-empty string', () => {
    const host = (connectionName: unknown) => () =>
      new ConsumerHost(js({ db: { transaction() {} }, amqpUrl, consumers: [], connectionName }));
    assert.throws(host(5), refused('connectionName', /non-empty string, got number 5/));
    assert.throws(host(''), refused('connectionName'));
    assert.throws(host(null), refused('connectionName'));
    assert.doesNotThrow(host('billing-consumers'));
  });

  it('the Nest module applies the same rules, and the relay exchange rules to `exchanges`', () => {
    const module = (options: object) => () =>
      resolveModuleOptions(js({ amqpUrl, databaseUrl: 'postgres://x', ...options }), silentLogger);
    assert.throws(module({ databaseUrl: 'not a url' }), refused('databaseUrl'));
    assert.throws(module({ databaseUrl: undefined, pool: {} }), refused('pool'));
    assert.throws(module({ exchanges: [null] }), refused('exchanges[0]'));
    assert.throws(module({ exchanges: ['a', 5] }), refused('exchanges[1]'));
    assert.throws(module({ exchanges: ['amq.x'] }), refused('exchanges[0]', /reserved/));
    assert.throws(
      module({ exchanges: [{ name: 'a', durable: 'no' }] }),
      refused('exchanges[0].durable'),
    );
    assert.throws(
      module({ exchanges: [{ name: 'a', alternateExchange: 5 }] }),
      refused('exchanges[0].alternateExchange'),
    );
    assert.throws(
      module({
        exchanges: [
          { name: 'a', alternateExchange: 'x' },
          { name: 'a', alternateExchange: 'y' },
        ],
      }),
      refused('exchanges', /alternateExchange x elsewhere and y here/),
    );
    assert.throws(
      module({ exchanges: ['a', { name: 'a', type: 'fanout' }] }),
      refused('exchanges', /type topic elsewhere and fanout here/),
    );
    assert.doesNotThrow(module({ exchanges: ['a', { name: 'a', alternateExchange: 'x' }] }));
  });

  it('a consumer refuses a name Postgres cannot store, or too long for its queue, saying what to set', () => {
    const limits = { brokerConsumerTimeoutMs: 30 * 60_000 };
    const consumer = (fields: object) => () =>
      resolveConsumer(js({ exchange: 'orders', handler: async () => {}, ...fields }), limits);
    assert.throws(consumer({ name: 'nul\u0000name' }), refused('consumers[].name', /NUL/));
    const long = 'n'.repeat(220);
    assert.throws(
      consumer({ name: long }),
      refused(
        `consumers[${long}].queue`,
        /consumer's name when left out.*got 220\b.*shorter queue/,
      ),
    );
    assert.doesNotThrow(consumer({ name: long, queue: 'short' }));
  });

  it("a host refuses a consumer whose queue is another's partition, retry or dead-letter queue", () => {
    const host =
      (...consumers: object[]) =>
      () =>
        new ConsumerHost(
          js({
            db: { transaction() {} },
            amqpUrl,
            consumers: consumers.map((c) => ({
              exchange: 'orders',
              handler: async () => {},
              ...c,
            })),
          }),
        );
    const partitioned = { name: 'f1', ordered: true, partitions: 2 };
    assert.throws(
      host(partitioned, { name: 'f1.partition-0-of-2' }),
      refused('consumers[f1.partition-0-of-2].queue', /"f1"/),
    );
    assert.throws(
      host({ name: 'billing' }, { name: 'billing.dlq' }),
      refused('consumers[billing.dlq].queue'),
    );
    assert.throws(
      host({ name: 'billing' }, { name: 'other', queue: 'billing.retry.1000ms' }),
      refused('consumers[other].queue', /also a queue of consumer "billing"/),
    );
    assert.throws(host({ name: 'a' }, { name: 'b', queue: 'a' }), refused('consumers[b].queue'));
    assert.doesNotThrow(host(partitioned, { name: 'billing' }, { name: 'billing-2' }));
  });

  it('a consumer refuses an amq.* exchange it cannot declare, but binds to the predefined ones', () => {
    const limits = { brokerConsumerTimeoutMs: 30 * 60_000 };
    const consumer = (exchange: string) => () =>
      resolveConsumer(js({ name: 'c', exchange, handler: async () => {} }), limits);
    assert.throws(consumer('amq.x'), refused('consumers[c].exchange', /reserved/));
    assert.doesNotThrow(consumer('amq.topic'));
  });

  it('migrate and the migration providers refuse a wrong handle, a string or an unknown key', async () => {
    await assert.rejects(migrate(js(undefined)), refused('pool'));
    await assert.rejects(migrate(js('postgres://x/y')), refused('pool', /databaseUrl/));
    await assert.rejects(migrate(pool, js('probeC_s')), refused('options', /"probeC_s"/));
    await assert.rejects(migrate(pool, js({ shema: 'x' })), refused('shema', /`schema`/));
    assert.throws(() => new OutboxMigrationProvider(js('x')), refused('options'));
    assert.throws(() => new OutboxMigrationProvider(js({ prefx: 'a' })), refused('prefx'));
    assert.throws(() => combineMigrationProviders(js({})), refused('providers[0]'));
  });

  it('outboxStatus, flushOutbox and collectMetrics refuse a string for options, or a wrong handle', async () => {
    await assert.rejects(outboxStatus(pool, js('x')), refused('options', /"x"/));
    await assert.rejects(outboxStatus(js('postgres://x')), refused('pool'));
    await assert.rejects(flushOutbox(js(undefined)), refused('pool'));
    await assert.rejects(flushOutbox(js({ selectFrom() {} })), refused('pool'));
    await assert.rejects(flushOutbox(pool, js({ relay: {} })), refused('relay'));
    await assert.rejects(flushOutbox(pool, js({ timeotMs: 5 })), refused('timeotMs'));
    await assert.rejects(flushOutbox(pool, js('s')), refused('options'));
    await assert.rejects(collectMetrics(js(undefined)), refused('options'));
    await assert.rejects(collectMetrics(js({ relay: {} })), refused('relay'));
    await assert.rejects(collectMetrics(js({ consumers: {} })), refused('consumers'));
    await assert.rejects(collectMetrics(js({ pool: 'x' })), refused('pool'));
  });

  it('outboxStatus on an unmigrated schema says so, as the CLI does', async () => {
    await assert.rejects(outboxStatus(pool, { schema: 'api_args_never_migrated' }), (error) => {
      assert.ok(error instanceof OutboxkitError);
      assert.equal(error.code, 'schema-not-migrated');
      return true;
    });
  });

  it('the testing helpers refuse before connecting or polling', async () => {
    await assert.rejects(waitForIdle(js(undefined), js({ amqpUrl })), refused('host'));
    await assert.rejects(waitForIdle(js({}), { amqpUrl: AMQP_URL }), refused('host'));
    const host = { consumers: [], queues: [], inFlight: 0, stats: () => ({ received: 0 }) };
    await assert.rejects(waitForIdle(host, js(undefined)), refused('amqpUrl'));
    await assert.rejects(waitForIdle(host, js({ amqpUrl, timeotMs: 1 })), refused('timeotMs'));
    await assert.rejects(capturePublished(js(undefined), 'x'), refused('amqpUrl'));
    await assert.rejects(capturePublished(amqpUrl, js(undefined)), refused('exchange'));
    await assert.rejects(capturePublished(amqpUrl, 'x', js(5)), refused('routingKey'));
    await assert.rejects(
      declareExchanges(amqpUrl, [], js({ timeotMs: 5 })),
      refused('timeotMs', /`timeoutMs`/),
    );
    await assert.rejects(
      declareExchanges(amqpUrl, [], js({ timeoutMs: '5' })),
      refused('timeoutMs'),
    );
    await assert.rejects(
      declareExchanges(amqpUrl, [js({ name: 'a', durable: 'no' })]),
      refused('exchanges[0].durable'),
    );
    await assert.rejects(resizePartitions(js(undefined)), refused('options'));
  });

  it('the metrics helpers, the dashboard and the retention cleaner refuse what they cannot read', () => {
    assert.throws(() => renderPrometheus(js('x')), refused('samples'));
    assert.throws(() => renderPrometheus(js(undefined)), refused('samples'));
    assert.throws(() => renderPrometheus(js([{}])), refused('samples[0]'));
    assert.throws(() => new LatencyHistogram(js('x')), refused('bounds'));
    assert.throws(() => new LatencyHistogram([3, 1]), refused('bounds'));
    assert.throws(
      () => new OutboxDashboard(js({ pool, allowedHosts: '*' })),
      refused('allowedHosts'),
    );
    assert.throws(() => new OutboxDashboard(js({ pool, queues: 'q', amqpUrl })), refused('queues'));
    assert.throws(() => new OutboxDashboard(js(undefined)), refused('options'));
    const db = { executeQuery() {} };
    assert.throws(() => new RetentionCleaner(js({ db, retentonMs: 5 })), refused('retentonMs'));
    assert.throws(() => new RetentionCleaner(js('x')), refused('options'));
    assert.throws(() => new RetentionCleaner(js({ db: 'postgres://x' })), refused('db'));
    assert.throws(
      () => new RetentionCleaner(js({ db: { isTransaction: true, executeQuery() {} } })),
      refused('db', /not a transaction/),
    );
  });

  it('the metric registrations refuse a misspelt source when registering, not at every scrape', () => {
    const registered: string[] = [];
    const registry = {
      registerMetric: (metric: { name: string }) => registered.push(metric.name),
      removeSingleMetric() {},
    };
    const relay = { stats() {} };
    assert.throws(
      () => registerPrometheusMetrics(registry, js({ relay, consumer: relay })),
      refused('consumer', /not an option of registerPrometheusMetrics; did you mean `consumers`/),
    );
    assert.throws(
      () => registerPrometheusMetrics(js(undefined), { relay: js(relay) }),
      refused('registry'),
    );
    assert.throws(() => registerPrometheusMetrics(registry, js(undefined)), refused('options'));
    assert.deepEqual(registered, []);
    const meter = {};
    assert.throws(
      () => registerOpenTelemetryMetrics(js({ meter, relay, pol: pool })),
      refused('pol', /registerOpenTelemetryMetrics; did you mean `pool`/),
    );
    assert.throws(() => registerOpenTelemetryMetrics(js(undefined)), refused('options'));
  });
});

describe('the CLI refuses a bad argument as a usage error (exit 2), before it logs anything', () => {
  const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const cli = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
        env: { ...process.env, DATABASE_URL, AMQP_URL },
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      return error as { code: number; stdout: string; stderr: string };
    }
  };

  it('dead-letters show <not a row id>', async () => {
    const r = await cli('dead-letters', 'show', 'abc');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /parked row id is a number/);
  });

  it('dead-letters show <a number over the bigint range>', async () => {
    const r = await cli('dead-letters', 'show', '9999999999999999999');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /parked row id is a number up to 2\^63 - 1/);
  });

  it('dead-letters lst, with a did-you-mean', async () => {
    const r = await cli('dead-letters', 'lst');
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /\(got "lst"; did you mean list\?\)/);
  });

  it('relay --http-port abc', async () => {
    const r = await cli('relay', '--http-port', 'abc');
    assert.equal(r.code, 2, r.stderr);
    assert.doesNotMatch(r.stdout + r.stderr, /relay starting/);
  });
});

describe('DeadLetterQueue.list', () => {
  it('refuses a wrong filter before it looks at the queue', async () => {
    const dlq = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue: 'api-args-no-such-queue' });
    try {
      await assert.rejects(dlq.list(js({ reason: 5 })), refused('reason'));
    } finally {
      await dlq.close();
    }
  });
});

describe('defineConsumer refuses a misspelt option where the definition is written', () => {
  it('suggests the retry policy for maxAttempts at the top', () => {
    assert.throws(
      () =>
        defineConsumer({
          name: 'billing',
          exchange: 'orders',
          handler: async () => {},
          ...({ maxAttempts: 3 } as object),
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigurationError, String(error));
        assert.equal(error.option, 'consumers[billing].maxAttempts');
        assert.match(error.message, /did you mean `consumers\[billing\]\.retry\.maxAttempts`/);
        return true;
      },
    );
  });

  it('refuses what the host would refuse at start: ordered with batchSize, partitions without ordered, no handler', () => {
    // Returned unchanged before, refused only by `new ConsumerHost` (found by a probe).
    const base = { name: 'billing', exchange: 'orders', handler: async () => {} };
    for (const [extra, option] of [
      [{ ordered: true, batchSize: 10 }, 'batchSize'],
      [{ partitions: 4 }, 'partitions'],
      [{ handler: undefined }, 'handler'],
      [{ queueType: 'stream' }, 'queueType'],
    ] as const) {
      assert.throws(
        () => defineConsumer({ ...base, ...extra } as never),
        (error: unknown) => {
          assert.ok(error instanceof ConfigurationError, String(error));
          assert.match(error.option, new RegExp(option));
          return true;
        },
      );
    }
    assert.doesNotThrow(() => defineConsumer({ ...base, ordered: true, partitions: 4 }));
  });
});
