// What a plain-JavaScript caller can pass that the types forbid, as a probe of every entry point
// found it: each was taken without a word (a bulk purge's misspelt option ignored, NaN stored as
// null), or failed deep inside with a plain TypeError or a raw Postgres error.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { resolveConsumer } from '../src/consumer/resolve-consumer.js';
import { OutboxDashboard } from '../src/dashboard/outbox-dashboard.js';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { InvalidMessageError } from '../src/errors/invalid-message-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { collectMetrics } from '../src/metrics/collect-metrics.js';
import { registerOpenTelemetryMetrics } from '../src/metrics/register-opentelemetry-metrics.js';
import { migrate } from '../src/migrate/migrate.js';
import { OutboxModule } from '../src/nestjs/outbox.module.js';
import { pinoOutboxLogger } from '../src/pino/pino-outbox-logger.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import type { TransactionLike } from '../src/sql/sql-executor.js';
import { flushOutbox } from '../src/testing/flush-outbox.js';
import { consoleLogger } from '../src/util/logger.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { js, refused } from './support/refused.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

const amqpUrl = 'amqp://127.0.0.1:1';

/** An InvalidMessageError of `reason`, whose message matches `detail`. */
const invalid = (reason: string, detail: RegExp) => (error: unknown) => {
  assert.ok(error instanceof InvalidMessageError, String(error));
  assert.equal(error.reason, reason);
  assert.match(error.message, detail);
  return true;
};

describe('plain JavaScript: what the types forbid is refused, naming it', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('plain_js');
  });
  after(() => t.close());

  it('the dead-letter tools refuse an option they do not take before changing anything', async () => {
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db.transaction().execute((trx) =>
      writer.addMany(trx, [
        { exchange: 'orders', routingKey: 'a', payload: 1 },
        { exchange: 'orders', routingKey: 'b', payload: 2 },
      ]),
    );
    await parkOutboxRows(t, 'unroutable');
    const parked = new ParkedMessages({ pool: t.pool, schema: t.schema });
    await assert.rejects(
      parked.purge({}, js({ dryRun: true })),
      refused('dryRun', /not an option of ParkedMessages\.purge/),
    );
    await assert.rejects(parked.replay({}, js({ limit: 1 })), refused('limit'));
    await assert.rejects(
      parked.purge({}, js({ onProgress: 'x' })),
      refused('onProgress', /must be a function/),
    );
    await assert.rejects(parked.list({}, js(null)), refused('options'));
    await assert.rejects(parked.list({}, js({ limt: 1 })), refused('limt', /did you mean `limit`/));
    assert.equal(await parked.count({}), 2, 'nothing was purged or replayed');
    // Nothing listens on port 1: each refusal comes before a connection.
    const dlq = new DeadLetterQueue({ amqpUrl, queue: 'nowhere' });
    try {
      await assert.rejects(dlq.replay({}, js({ target: 'exchange' })), refused('target'));
      await assert.rejects(dlq.replay({}, js(null)), refused('options'));
      await assert.rejects(dlq.purge({}, js({ dryRun: true })), refused('dryRun'));
      await assert.rejects(dlq.list({}, js({ limt: 1 })), refused('limt'));
      await assert.rejects(dlq.replayOne('m-1', js({ target: 'queue' })), refused('target'));
    } finally {
      await dlq.close();
    }
    // Filters Postgres could not run: a raw DatabaseError before.
    await assert.rejects(parked.list({ olderThanMs: 1e20 }), refused('olderThanMs', /1,000 years/));
    await assert.rejects(parked.list({ messageId: 'a\u0000' }), refused('messageId', /NUL/));
  });

  it('a schema without outboxkit tables is said so by the dead-letter tools and flushOutbox', async () => {
    const notMigrated = (error: unknown) => {
      assert.ok(error instanceof OutboxkitError, String(error));
      assert.equal(error.code, 'schema-not-migrated');
      assert.match(error.message, /outboxkit migrate --schema plain_js_none/);
      return true;
    };
    const parked = new ParkedMessages({ pool: t.pool, schema: 'plain_js_none' });
    await assert.rejects(parked.list(), notMigrated);
    await assert.rejects(flushOutbox(t.pool, { schema: 'plain_js_none' }), notMigrated);
  });

  it('the writer refuses a sparse array, a content type Postgres cannot store, and payloads JSON would change', async () => {
    const trx = { query: async () => ({ rows: [], rowCount: 0 }) } as unknown as TransactionLike;
    const writer = new OutboxWriter({ notifyIntervalMs: false });
    const base = { exchange: 'orders', routingKey: 'a' };
    // biome-ignore lint/suspicious/noSparseArray: the point
    await assert.rejects(writer.addMany(trx, js([, { ...base, payload: 1 }])), (error: unknown) => {
      assert.ok(error instanceof InvalidMessageError, String(error));
      assert.equal(error.index, 0);
      return true;
    });
    await assert.rejects(
      writer.add(trx, { ...base, payload: 'x', contentType: 'text/\u0000plain' }),
      invalid('missing-content-type', /without NUL or lone surrogates/),
    );
    await assert.rejects(
      writer.add(trx, { ...base, payload: 'x', contentType: 'text/plain\uD800' }),
      invalid('missing-content-type', /lone surrogates/),
    );
    await assert.rejects(
      writer.add(trx, { ...base, payload: Number.NaN }),
      invalid(
        'payload-not-serializable',
        /payload is the number NaN, which JSON would turn into null/,
      ),
    );
    await assert.rejects(
      writer.add(trx, { ...base, payload: { total: Number.POSITIVE_INFINITY } }),
      invalid('payload-not-serializable', /holds at key "total" the number Infinity/),
    );
    await assert.rejects(
      writer.add(trx, { ...base, payload: { x: () => 1 } }),
      invalid(
        'payload-not-serializable',
        /holds at key "x" a function, which JSON would leave out/,
      ),
    );
    // Left out, as JSON does and as a caller means it: an undefined field.
    await writer.add(trx, { ...base, payload: { x: undefined, y: 1 } });
  });

  it('counts and names are bounded and checked where they are given', () => {
    const relay = (options: object) => () =>
      resolveRelayOptions(js({ amqpUrl, databaseUrl: 'postgres://x/y', ...options }));
    assert.throws(relay({ concurrency: 1e12 }), refused('concurrency', /at most 1000/));
    assert.throws(relay({ batchSize: 1e9 }), refused('batchSize', /at most 100000/));
    assert.throws(relay({ keyRunSize: 1e9 }), refused('keyRunSize'));
    const limits = { brokerConsumerTimeoutMs: 30 * 60_000 };
    const consumer = (fields: object) => () =>
      resolveConsumer(
        js({ name: 'c', exchange: 'orders', handler: async () => {}, ...fields }),
        limits,
      );
    assert.throws(
      consumer({ concurrency: 1e9 }),
      refused('consumers[c].concurrency', /concurrency \* batchSize must be at most 65535/),
    );
    assert.throws(consumer({ batchSize: 70_000 }), refused('consumers[c].batchSize'));
    assert.throws(consumer({ name: 'c\uD800' }), refused('consumers[].name', /lone surrogate/));
    assert.throws(consumer({ exchange: 'a\u0000b' }), refused('consumers[c].exchange', /NUL/));
    assert.throws(consumer({ queue: 'q\u0000' }), refused('consumers[c].queue', /NUL/));
    assert.throws(
      consumer({ routingKeys: ['ok', 'r'.repeat(300)] }),
      refused('consumers[c].routingKeys[1]', /at most 255 bytes/),
    );
    assert.throws(consumer({ routingKeys: ['a\u0000'] }), refused('consumers[c].routingKeys[0]'));
    // biome-ignore lint/suspicious/noSparseArray: the point
    const sparse = js([, { name: 'c', exchange: 'orders', handler: async () => {} }]);
    assert.throws(
      () => new ConsumerHost(js({ db: { transaction() {} }, amqpUrl, consumers: sparse })),
      refused('consumers'),
    );
  });

  it('exchange declarations, meters, loggers and dashboards refuse what can never work', async () => {
    await assert.rejects(
      declareExchanges(amqpUrl, [{ name: 'a\u0000b' }]),
      refused('exchanges[0].name'),
    );
    await assert.rejects(
      declareExchanges(amqpUrl, [{ name: 'a', alternateExchange: 'b\uD800' }]),
      refused('exchanges[0].alternateExchange'),
    );
    assert.throws(() => registerOpenTelemetryMetrics(js({ meter: null })), refused('meter'));
    assert.throws(() => registerOpenTelemetryMetrics(js({ meter: {} })), refused('meter'));
    assert.throws(() => registerOpenTelemetryMetrics(js({ meter: 'm' })), refused('meter'));
    assert.throws(() => consoleLogger(js('DEBUG')), refused('level', /debug, info, warn or error/));
    assert.throws(() => pinoOutboxLogger(js(undefined)), refused('logger', /pino logger/));
    assert.throws(() => pinoOutboxLogger(js('info')), refused('logger'));
    assert.throws(() => pinoOutboxLogger(js({ info() {} })), refused('logger'));
    const pinoLike = { debug() {}, info() {}, warn() {}, error() {} };
    assert.throws(() => pinoOutboxLogger(pinoLike, js({ bindings: null })), refused('bindings'));
    assert.throws(() => pinoOutboxLogger(pinoLike, js({ binding: {} })), refused('binding'));
    assert.doesNotThrow(() => pinoOutboxLogger(pinoLike, { bindings: {} }));
    // A schema refused when given, not warned of at each scrape (and kept for the default's).
    await assert.rejects(collectMetrics(js({ pool: t.pool, schema: '' })), refused('schema'));
    // A schema that is no string: the same limit as a string's, not the identifiers' 63.
    await assert.rejects(migrate(t.pool, js({ schema: 42 })), refused('schema', /1 to 53 bytes/));
    await assert.rejects(
      migrate(t.pool, { schema: 'plain\uD800' }),
      refused('schema', /lone surrogate/),
    );
    const pool = new pg.Pool({ max: 1 });
    try {
      assert.throws(
        () => new OutboxDashboard({ pool, allowedHosts: ['http://ops.example.com'] }),
        refused('allowedHosts[0]', /without scheme, port or path/),
      );
      assert.throws(
        () => new OutboxDashboard({ pool, allowedHosts: ['ops.example.com:8080'] }),
        refused('allowedHosts[0]'),
      );
      assert.doesNotThrow(
        () => new OutboxDashboard({ pool, allowedHosts: ['ops.example.com', '[::1]'] }),
      );
    } finally {
      await pool.end();
    }
  });

  it('the Nest module refuses forRootAsync without a factory, and extras of the wrong kind', () => {
    assert.throws(() => OutboxModule.forRootAsync(js(undefined)), refused('options'));
    assert.throws(() => OutboxModule.forRootAsync(js({})), refused('useFactory', /exactly one/));
    assert.throws(
      () => OutboxModule.forRootAsync(js({ useFactory: 'x' })),
      refused('useFactory', /must be a function/),
    );
    const options = { amqpUrl, databaseUrl: 'postgres://x/y' };
    assert.throws(
      () => OutboxModule.forRoot(js({ ...options, isGlobal: 'yes' })),
      refused('isGlobal'),
    );
    assert.throws(
      () => OutboxModule.forRoot(js({ ...options, dashboard: { path: 5 } })),
      refused('dashboard.path'),
    );
    // The module made is OutboxModule itself, with its providers, not the builder's base class.
    assert.equal(OutboxModule.forRootAsync({ useFactory: () => options }).module, OutboxModule);
  });
});
