import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DECLARE_EXCHANGES_OPTION_NAMES } from '../src/amqp/declare-exchanges.js';
import { RELAY_COMMAND_OPTIONS } from '../src/cli/relay-command.js';
import type { AnyConsumerDefinition } from '../src/consumer/consumer-definition.js';
import {
  CONSUMER_DEFINITION_OPTION_NAMES,
  RETRY_POLICY_OPTION_NAMES,
} from '../src/consumer/consumer-definition.js';
import {
  CONSUMER_HOST_OPTION_NAMES,
  ConsumerHost,
  type ConsumerHostOptions,
} from '../src/consumer/consumer-host.js';
import { RESIZE_PARTITIONS_OPTION_NAMES } from '../src/consumer/resize-partitions.js';
import { RETENTION_OPTION_NAMES } from '../src/consumer/retention-cleaner.js';
import { DASHBOARD_OPTION_NAMES } from '../src/dashboard/dashboard-options.js';
import { OutboxDashboard } from '../src/dashboard/outbox-dashboard.js';
import { DEAD_LETTER_QUEUE_OPTION_NAMES } from '../src/dead-letters/dead-letter-queue.js';
import {
  PARKED_MESSAGES_OPTION_NAMES,
  ParkedMessages,
} from '../src/dead-letters/parked-messages.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { collectMetrics, METRICS_OPTION_NAMES } from '../src/metrics/collect-metrics.js';
import { MIGRATION_PROVIDER_OPTION_NAMES } from '../src/migrate/kysely-migration-provider.js';
import { MIGRATE_OPTION_NAMES } from '../src/migrate/migrate.js';
import { HEALTH_OPTION_NAMES } from '../src/nestjs/health/outbox-health.indicator.js';
import { DASHBOARD_SETTINGS_OPTION_NAMES } from '../src/nestjs/outbox-dashboard-settings.js';
import { HANDLER_OPTION_NAMES } from '../src/nestjs/outbox-handler.metadata.js';
import { MODULE_OPTION_NAMES } from '../src/nestjs/outbox-module-options.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { RENAMED_OPTIONS } from '../src/options/renamed-options.js';
import { TLS_OPTION_NAMES } from '../src/options/tls-options.js';
import {
  RELAY_OPTION_NAMES,
  RELAY_RETRY_OPTION_NAMES,
  type RelayOptions,
  resolveRelayOptions,
} from '../src/relay/relay-options.js';
import { STATUS_OPTION_NAMES } from '../src/status/outbox-status.js';
import type { BackoffPolicy } from '../src/util/backoff.js';
import { silentLogger } from '../src/util/logger.js';
import { positiveInteger } from '../src/util/positive-integer.js';
import { OutboxWriter, WRITER_OPTION_NAMES } from '../src/writer/outbox-writer.js';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const OPTIONS_MD = readFileSync(join(ROOT, 'docs', 'options.md'), 'utf8');

/** The option names of the code, by the name docs/options.md marks each table with. */
const CODE: Readonly<Record<string, readonly string[]>> = {
  OutboxWriterOptions: WRITER_OPTION_NAMES,
  RelayOptions: RELAY_OPTION_NAMES,
  RelayRetryPolicy: RELAY_RETRY_OPTION_NAMES,
  ConsumerHostOptions: CONSUMER_HOST_OPTION_NAMES,
  RetentionOptions: RETENTION_OPTION_NAMES,
  ConsumerDefinition: CONSUMER_DEFINITION_OPTION_NAMES,
  RetryPolicy: RETRY_POLICY_OPTION_NAMES,
  ParkedMessagesOptions: PARKED_MESSAGES_OPTION_NAMES,
  DeadLetterQueueOptions: DEAD_LETTER_QUEUE_OPTION_NAMES,
  OutboxDashboardOptions: DASHBOARD_OPTION_NAMES,
  OutboxStatusOptions: STATUS_OPTION_NAMES,
  MigrateOptions: MIGRATE_OPTION_NAMES,
  OutboxMigrationProviderOptions: MIGRATION_PROVIDER_OPTION_NAMES,
  CollectMetricsOptions: METRICS_OPTION_NAMES,
  OutboxModuleOptions: MODULE_OPTION_NAMES,
  OutboxDashboardSettings: DASHBOARD_SETTINGS_OPTION_NAMES,
  OutboxHandlerOptions: HANDLER_OPTION_NAMES,
  OutboxHealthOptions: HEALTH_OPTION_NAMES,
  ResizePartitionsOptions: RESIZE_PARTITIONS_OPTION_NAMES,
  TlsOptions: TLS_OPTION_NAMES,
  DeclareExchangesOptions: DECLARE_EXCHANGES_OPTION_NAMES,
};

/**
 * The first column of the table after each `<!-- marker: key -->` comment: the backquoted name
 * in each row, below the header and the separator row.
 */
function documentedTables(markdown: string, marker: string): Map<string, string[]> {
  const tables = new Map<string, string[]>();
  const lines = markdown.split('\n');
  lines.forEach((line, i) => {
    const key = new RegExp(`^<!-- ${marker}: (\\S+) -->$`).exec(line.trim())?.[1];
    if (!key) return;
    assert.ok(!tables.has(key), `docs/options.md marks two tables as ${key}`);
    const names: string[] = [];
    for (let j = i + 3; j < lines.length && lines[j]!.startsWith('|'); j += 1) {
      const name = /^\|\s*`([^`]+)`/.exec(lines[j]!)?.[1];
      assert.ok(name, `docs/options.md line ${j + 1}: the first cell must be a \`name\``);
      names.push(name);
    }
    tables.set(key, names);
  });
  return tables;
}

function sameNames(where: string, documented: readonly string[], code: readonly string[]): void {
  const missing = code.filter((n) => !documented.includes(n));
  const unknown = documented.filter((n) => !code.includes(n));
  assert.deepEqual(
    { missing, unknown },
    { missing: [], unknown: [] },
    `${where}: docs/options.md lists ${JSON.stringify(unknown)} that the code lacks, and lacks ` +
      `${JSON.stringify(missing)} that the code has`,
  );
  assert.equal(new Set(documented).size, documented.length, `${where}: a name is listed twice`);
}

describe('docs/options.md', () => {
  it('has one table per options type of the code, and no other', () => {
    const tables = documentedTables(OPTIONS_MD, 'options');
    assert.deepEqual([...tables.keys()].sort(), Object.keys(CODE).sort());
  });

  for (const [key, names] of Object.entries(CODE)) {
    it(`lists exactly the options of ${key}`, () => {
      sameNames(key, documentedTables(OPTIONS_MD, 'options').get(key) ?? [], names);
    });
  }

  it("docs/nestjs.md's module options table lists exactly the module's options", () => {
    const nestjs = readFileSync(join(ROOT, 'docs', 'nestjs.md'), 'utf8');
    // It lacked four (found by a probe): poolSize, databaseTls, amqpTls, prometheusRegistry.
    const table = documentedTables(nestjs, 'module-options').get('OutboxModuleOptions') ?? [];
    sameNames('docs/nestjs.md OutboxModuleOptions', table, MODULE_OPTION_NAMES);
  });

  it('lists exactly the flags of outboxkit relay', () => {
    const flags = Object.keys(RELAY_COMMAND_OPTIONS).map((f) => `--${f}`);
    sameNames('outboxkit relay', documentedTables(OPTIONS_MD, 'flags').get('relay') ?? [], flags);
  });

  it('is linked from the README', () => {
    assert.match(readFileSync(join(ROOT, 'README.md'), 'utf8'), /\]\(docs\/options\.md\)/);
  });
});

describe('renamed options', () => {
  const amqpUrl = 'amqp://localhost';
  const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
  const renamed = (option: string, now: RegExp) => (error: unknown) =>
    error instanceof ConfigurationError && error.option === option && now.test(error.message);

  it('fail naming the new option instead of being ignored', async () => {
    const old = <T>(options: object): T => options as T;
    assert.throws(
      () => resolveRelayOptions(old({ pool, amqpUrl, retryBackoff: { initialMs: 1, maxMs: 2 } })),
      renamed('retryBackoff', /retry: \{ backoff \}/),
    );
    assert.throws(
      () => resolveRelayOptions(old({ pool, amqpUrl, maxAttempts: 3 })),
      renamed('maxAttempts', /retry: \{ maxAttempts \}/),
    );
    assert.throws(
      () => resolveRelayOptions(old({ pool, amqpUrl, maxPayloadBytes: 10 })),
      renamed('maxPayloadBytes', /maxMessageBytes/),
    );
    assert.throws(
      () => new OutboxWriter(old({ maxPayloadBytes: 10 })),
      renamed('maxPayloadBytes', /maxMessageBytes/),
    );
    assert.throws(
      () =>
        resolveModuleOptions(
          old({ databaseUrl: 'postgres://x', amqpUrl, maxPayloadBytes: 1 }),
          silentLogger,
        ),
      renamed('maxPayloadBytes', /maxMessageBytes/),
    );
    assert.throws(() => new OutboxDashboard(old({ db: pool })), renamed('db', /pool/));
    assert.throws(
      () => new OutboxDashboard(old({ pool, readOnly: false })),
      renamed('readOnly', /allowReplay/),
    );
    assert.throws(() => new ParkedMessages(old({ db: pool })), renamed('db', /pool/));
    await assert.rejects(collectMetrics(old({ db: pool })), renamed('db', /pool/));
  });

  it('are each named in the CHANGELOG', () => {
    const changelog = readFileSync(join(ROOT, 'CHANGELOG.md'), 'utf8');
    for (const renames of Object.values(RENAMED_OPTIONS)) {
      for (const old of Object.keys(renames)) assert.match(changelog, new RegExp(`\`${old}\\b`));
    }
  });
});

describe('unknown options', () => {
  const amqpUrl = 'amqp://localhost';
  const pool = { query: async () => ({ rows: [] }), connect: async () => ({}) };
  const db = { transaction() {} } as never;
  const handler = async () => {};
  // What a spread config, a JSON file or JavaScript hands over: the compiler sees no literal.
  const loose = <T>(options: object): T => options as T;
  const unknown = (option: string, guess?: string) => (error: unknown) =>
    error instanceof ConfigurationError &&
    error.option === option &&
    error.message.includes('is not an option of') &&
    (guess === undefined || error.message.includes(`did you mean \`${guess}\``));

  it('fail naming the option and the closest known one instead of being ignored', async () => {
    assert.throws(
      () => resolveRelayOptions(loose({ pool, amqpUrl, concurency: 8 })),
      unknown('concurency', 'concurrency'),
    );
    assert.throws(
      () => resolveRelayOptions(loose({ pool, amqpUrl, retry: { maxAtempts: 3 } })),
      unknown('retry.maxAtempts', 'retry.maxAttempts'),
    );
    assert.throws(
      () =>
        new ConsumerHost(
          loose<ConsumerHostOptions>({ db, amqpUrl, consumers: [], stopTimeout: 5 }),
        ),
      unknown('stopTimeout', 'stopTimeoutMs'),
    );
    assert.throws(
      () =>
        new ConsumerHost(
          loose<ConsumerHostOptions>({
            db,
            amqpUrl,
            consumers: [],
            retention: { retentionDays: 3 },
          }),
        ),
      unknown('retention.retentionDays'),
    );
    const consumer = { name: 'orders', exchange: 'shop', handler };
    assert.throws(
      () =>
        new ConsumerHost({
          db,
          amqpUrl,
          consumers: [loose<AnyConsumerDefinition>({ ...consumer, concurency: 8 })],
        }),
      unknown('consumers[orders].concurency', 'consumers[orders].concurrency'),
    );
    assert.throws(
      () =>
        new ConsumerHost({
          db,
          amqpUrl,
          consumers: [loose<AnyConsumerDefinition>({ ...consumer, retry: { maxAttempt: 3 } })],
        }),
      unknown('consumers[orders].retry.maxAttempt', 'consumers[orders].retry.maxAttempts'),
    );
    assert.throws(
      () =>
        resolveRelayOptions(
          loose({
            pool,
            amqpUrl,
            exchanges: [{ name: 'shop', alternateExchnage: 'shop.unrouted' }],
          }),
        ),
      unknown('exchanges[0].alternateExchnage', 'exchanges[0].alternateExchange'),
    );
    assert.throws(() => new OutboxWriter(loose({ shema: 'x' })), unknown('shema', 'schema'));
    // The same stem, beyond two edits.
    assert.throws(
      () =>
        resolveModuleOptions(
          loose({ databaseUrl: 'postgres://x', amqpUrl, migrations: true }),
          silentLogger,
        ),
      unknown('migrations', 'migrate'),
    );
    assert.throws(
      () => new OutboxDashboard(loose({ pool, allowReplays: true })),
      unknown('allowReplays', 'allowReplay'),
    );
    assert.throws(
      () => new ParkedMessages(loose({ pool, schemaName: 'x' })),
      unknown('schemaName'),
    );
    await assert.rejects(collectMetrics(loose({ pool, shema: 'x' })), unknown('shema', 'schema'));
  });

  it('pass when their value is undefined: such a name sets nothing', () => {
    assert.doesNotThrow(() => new OutboxWriter(loose({ shema: undefined })));
    assert.doesNotThrow(() => resolveRelayOptions(loose({ pool, amqpUrl, concurency: undefined })));
  });
});

describe('positiveInteger', () => {
  it('returns the value or the fallback, and rejects anything but a positive safe integer', () => {
    assert.equal(positiveInteger('n', undefined, 5), 5);
    assert.equal(positiveInteger('n', 3, 5), 3);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53, '3']) {
      assert.throws(
        () => positiveInteger('some.option', bad, 5),
        (error: unknown) =>
          error instanceof ConfigurationError &&
          error.option === 'some.option' &&
          /must be a positive integer/.test(error.message),
        String(bad),
      );
    }
  });

  it('is what the classes use, so their messages name the option the same way', () => {
    assert.throws(
      () =>
        new ConsumerHost({
          db: { transaction() {} } as never,
          amqpUrl: 'amqp://x',
          consumers: [],
          stopTimeoutMs: 0,
        }),
      /Invalid option `stopTimeoutMs`: must be a positive integer, got 0/,
    );
    assert.throws(
      () =>
        resolveRelayOptions({
          databaseUrl: 'postgres://x',
          amqpUrl: 'amqp://x',
          retry: { maxAttempts: 0 },
        }),
      /Invalid option `retry.maxAttempts`: must be a positive integer, got 0/,
    );
    assert.throws(
      () =>
        resolveRelayOptions({
          databaseUrl: 'postgres://x',
          amqpUrl: 'amqp://x',
          retry: { unroutable: 'yes' as unknown as boolean },
        }),
      /Invalid option `retry.unroutable`: must be true or false, got 'yes' \(a string\)/,
    );
  });

  it('refuses a relay given both a pool and a database URL, one of which it would ignore', () => {
    assert.throws(
      () =>
        resolveRelayOptions({
          databaseUrl: 'postgres://x',
          pool: {} as never,
          amqpUrl: 'amqp://x',
        }),
      /Invalid option `databaseUrl`: give either `pool` or `databaseUrl`, not both/,
    );
  });

  it("refuses a backoff's factor or jitter out of range (NaN made every delay 0: a storm)", () => {
    const relay = (options: Partial<RelayOptions>) => () =>
      resolveRelayOptions({ databaseUrl: 'postgres://x', amqpUrl: 'amqp://x', ...options });
    const host = (reconnectBackoff: BackoffPolicy) => () =>
      new ConsumerHost({
        db: { transaction() {} } as never,
        amqpUrl: 'amqp://x',
        consumers: [],
        reconnectBackoff,
      });
    const base = { initialMs: 10, maxMs: 100 };
    for (const [make, option] of [
      [(b: BackoffPolicy) => relay({ retry: { backoff: b } }), 'retry.backoff'],
      [(b: BackoffPolicy) => relay({ reconnectBackoff: b }), 'reconnectBackoff'],
      [host, 'reconnectBackoff'],
    ] as const) {
      assert.throws(make({ ...base, jitter: Number.NaN }), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError);
        assert.equal(error.option, `${option}.jitter`);
        assert.match(error.message, /must be a number from 0 to 1, got NaN/);
        return true;
      });
      assert.throws(make({ ...base, factor: Number.NaN }), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError);
        assert.equal(error.option, `${option}.factor`);
        return true;
      });
      assert.throws(make({ ...base, factor: 0.5 }), ConfigurationError);
      assert.throws(make({ ...base, jitter: 2 }), ConfigurationError);
      assert.throws(make({ initialMs: 10, maxMs: Number.NaN }), ConfigurationError);
      assert.doesNotThrow(make({ ...base, factor: 1.5, jitter: 0 }));
    }
  });
});
