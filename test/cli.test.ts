import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { durationOf } from '../src/cli/cli-args.js';
import { migrate } from '../src/migrate/migrate.js';
import { loadMigrations } from '../src/migrate/migration-files.js';
import type { OutboxStatus } from '../src/status/outbox-status.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { payloadOf, TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

/** The compiled CLI, as `npx outboxkit` runs it: dist/test/ sits beside dist/src/. */
const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const ENV: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL, AMQP_URL };

interface Outcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A running `outboxkit` process with what it printed so far. */
interface CliProcess {
  readonly child: ChildProcess;
  readonly output: { stdout: string; stderr: string };
  /** Resolves when the process exits; rejects if it is still running after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<Outcome>;
}

const running = new Set<ChildProcess>();

function startCli(args: readonly string[], env: NodeJS.ProcessEnv = ENV): CliProcess {
  const child = spawn(process.execPath, ['--enable-source-maps', MAIN, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const output = { stdout: '', stderr: '' };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    output.stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    output.stderr += chunk;
  });
  // 'close' rather than 'exit': it comes after the pipes are drained, so the output is complete.
  const closed = once(child, 'close').then(([code, signal]) => {
    running.delete(child);
    return { code, signal, ...output } as Outcome;
  });
  return {
    child,
    output,
    exited(timeoutMs = 30_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(new Error(`outboxkit ${args.join(' ')} still running after ${timeoutMs} ms`)),
          timeoutMs,
        );
      });
      return Promise.race([closed, timeout]).finally(() => clearTimeout(timer));
    },
  };
}

function runCli(args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Outcome> {
  return startCli(args, env).exited();
}

function withoutEnv(...names: string[]): NodeJS.ProcessEnv {
  const env = { ...ENV };
  for (const name of names) delete env[name];
  return env;
}

after(() => {
  // A failed test must not leave a relay behind that keeps the run from ending.
  for (const child of running) child.kill('SIGKILL');
});

describe('outboxkit migrate', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('cli_mig', { migrate: false });
  });
  after(() => t.close());

  it('applies every migration, and a second run is a no-op', async () => {
    const versions = (await loadMigrations()).map((m) => m.version);
    const first = await runCli(['migrate', '--schema', t.schema]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`applied migrations ${versions.join(', ')}\\.`));
    assert.equal(await t.count('outbox'), 0);

    const second = await runCli(['migrate', '--schema', t.schema]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /up to date; nothing applied/);
  });
});

/** A migrated schema of its own beside a test database's, for rows no other test should see. */
class TestSchema {
  readonly schema: string;
  readonly ready: Promise<unknown>;
  readonly #t: TestDatabase;

  constructor(t: TestDatabase, suffix: string) {
    this.#t = t;
    this.schema = `${t.schema}_${suffix}`;
    this.ready = migrate(t.pool, { schema: this.schema });
  }

  /** One retrying row of `exchange`, whose last error is `error`. */
  async write(exchange: string, error: string): Promise<void> {
    await this.#t.pool.query(
      `INSERT INTO "${this.schema}".outbox (message_id, exchange, routing_key, payload, content_type, attempts, last_error)
       VALUES ('m-1', $1, 'k', '\\x7b7d', 'application/json', 1, $2)`,
      [exchange, error],
    );
  }

  async drop(): Promise<void> {
    await this.#t.pool.query(`DROP SCHEMA "${this.schema}" CASCADE`);
  }
}

describe('outboxkit status', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('cli_st');
    const writer = new OutboxWriter({ schema: t.schema });
    const message = (exchange: string, n: number) => ({
      exchange,
      routingKey: 'k',
      payload: { n },
    });
    await t.db.transaction().execute(async (trx) => {
      await writer.addMany(trx, [message('alpha', 1), message('alpha', 2), message('alpha', 3)]);
      await writer.addMany(trx, [message('beta', 4), message('beta', 5), message('gamma', 6)]);
    });
    const outbox = `"${t.schema}".outbox`;
    // One row of alpha failed twice and was written 90 s ago; gamma's row was parked.
    await t.pool.query(
      `UPDATE ${outbox} SET attempts = 2, created_at = now() - interval '90 seconds',
         last_error = 'nacked by the broker'
       WHERE id = (SELECT min(id) FROM ${outbox} WHERE exchange = 'alpha')`,
    );
    await t.pool.query(
      `WITH moved AS (DELETE FROM ${outbox} WHERE exchange IN ('gamma') RETURNING *)
       INSERT INTO "${t.schema}".outbox_parked (id, message_id, exchange, routing_key, payload,
         content_type, created_at, attempts, reason)
       SELECT id, message_id, exchange, routing_key, payload, content_type, created_at, attempts,
         'unroutable' FROM moved`,
    );
    await t.pool.query(
      `INSERT INTO "${t.schema}".processed_messages (consumer, business_key) VALUES ('c', '1'), ('c', '2')`,
    );
  });
  after(() => t.close());

  it('--json counts pending, oldest age, retrying and parked rows per exchange', async () => {
    const run = await runCli(['status', '--json', '--schema', t.schema]);
    assert.equal(run.code, 0, run.stderr);
    const status = JSON.parse(run.stdout) as OutboxStatus;
    assert.equal(status.schema, t.schema);
    assert.equal(status.processed, undefined);
    const ages = status.exchanges.map((e) => e.oldestPendingAgeSeconds);
    assert.ok(ages[0]! >= 90 && ages[0]! < 150, `alpha's oldest row is about 90 s old: ${ages[0]}`);
    assert.ok(ages[1]! >= 0 && ages[1]! < 60, `beta's rows are new: ${ages[1]}`);
    assert.equal(ages[2], null);
    assert.deepEqual(
      status.exchanges.map(({ oldestPendingAgeSeconds: _, ...counts }) => counts),
      [
        {
          exchange: 'alpha',
          pending: 3,
          retrying: 1,
          scheduled: 0,
          parked: 0,
          lastError: 'nacked by the broker',
        },
        { exchange: 'beta', pending: 2, retrying: 0, scheduled: 0, parked: 0, lastError: null },
        { exchange: 'gamma', pending: 0, retrying: 0, scheduled: 0, parked: 1, lastError: null },
      ],
    );
    assert.deepEqual(status.total, {
      pending: 5,
      scheduled: 0,
      oldestPendingAgeSeconds: ages[0],
      retrying: 1,
      parked: 1,
    });
  });

  it('prints a table, with the processed count on request', async () => {
    const run = await runCli(['status', '--processed', '--schema', t.schema]);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `outbox "${t.schema}"`);
    assert.match(lines[1]!, /^EXCHANGE\s+PENDING\s+SCHEDULED\s+OLDEST\s+RETRYING\s+PARKED$/);
    assert.match(lines[2]!, /^alpha\s+3\s+0\s+1m3\ds\s+1\s+0$/);
    assert.match(lines[3]!, /^beta\s+2\s+0\s+\d+s\s+0\s+0$/);
    assert.match(lines[4]!, /^gamma\s+0\s+0\s+-\s+0\s+1$/);
    assert.match(lines[5]!, /^\(total\)\s+5\s+0\s+1m3\ds\s+1\s+1$/);
    // Why rows retry, without a query of the table (found by a probe: the count alone).
    assert.deepEqual(lines.slice(6), [
      'last error of a retrying row:',
      '  alpha: nacked by the broker',
      'processed messages: 2',
    ]);
  });

  it('escapes control characters of exchange names and errors, which are anyone to write', async () => {
    // A terminal acted on them: an exchange name retitled the window and cleared the screen,
    // and a line break in it made a row of its own (a security probe).
    const evil = new TestSchema(t, 'esc');
    await evil.ready;
    try {
      await evil.write('bad\u001b]0;pwned\u0007\u001b[2J\nfake  1', 'boom\u001b[31m\u009b');
      for (const json of [false, true]) {
        const run = await runCli(['status', ...(json ? ['--json'] : []), '--schema', evil.schema]);
        assert.equal(run.code, 0, run.stderr);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: finding them is the point
        assert.doesNotMatch(run.stdout, /[\u001b\u0007\u009b]/);
        assert.match(
          run.stdout,
          json ? /\\u001b\]0;pwned/ : /bad\\x1b\]0;pwned\\x07\\x1b\[2J\\nfake/,
        );
      }
    } finally {
      await evil.drop();
    }
  });

  it('tells to migrate when the schema has no tables', async () => {
    const run = await runCli(['status', '--schema', `${t.schema}_none`]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /has no outboxkit tables: run `outboxkit migrate --schema \w+` first/);
  });
});

describe('outboxkit relay', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('cli_relay');
    broker = await TestBroker.open();
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('publishes committed rows, and on SIGTERM stops and exits 0', async () => {
    const exchange = await broker.exchange('events', 'topic');
    const queue = await broker.queue('all', exchange, '#');
    const writer = new OutboxWriter({ schema: t.schema });
    const write = (from: number, count: number) =>
      t.db.transaction().execute((trx) =>
        writer.addMany(
          trx,
          Array.from({ length: count }, (_, i) => ({
            exchange,
            routingKey: 'cli.test',
            payload: { n: from + i },
          })),
        ),
      );
    await write(0, 50);

    const relay = startCli([
      'relay',
      '--schema',
      t.schema,
      '--batch-size',
      '20',
      '--max-batch-bytes',
      '65536',
      '--key-run-size',
      '5',
      '--concurrency',
      '2',
      '--heartbeat',
      '2',
      '--publish-timeout',
      '5s',
      '--stop-timeout',
      '5s',
      '--max-attempts',
      '3',
      '--retry-initial',
      '100ms',
      '--retry-max',
      '2s',
      '--max-message-bytes',
      '65536',
      '--connection-name',
      'outboxkit-cli-test',
    ]);
    await broker.waitForDepth(queue, 50);
    // Rows written while it runs go out too: the relay woke on the commit.
    await write(50, 10);
    await broker.waitForDepth(queue, 60);
    await waitFor('the outbox to be empty', async () => (await t.count()) === 0);

    relay.child.kill('SIGTERM');
    const outcome = await relay.exited();
    assert.equal(outcome.code, 0, outcome.stderr);

    const messages = await broker.drain(queue);
    const numbers = messages.map((m) => (payloadOf(m) as { n: number }).n).sort((a, b) => a - b);
    assert.deepEqual(
      numbers,
      Array.from({ length: 60 }, (_, i) => i),
    );
    assert.equal(await t.count(), 0);

    const logs = outcome.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { level: string; message: string; signal?: string });
    const said = logs.map((l) => l.message);
    for (const expected of ['relay starting', 'relay started', 'relay stopping', 'relay stopped']) {
      assert.ok(said.includes(expected), `logs "${expected}": ${said.join(' | ')}`);
    }
    assert.equal(logs.find((l) => l.message === 'relay stopping')?.signal, 'SIGTERM');
    const password = new URL(AMQP_URL).password;
    if (password) assert.ok(!outcome.stderr.includes(`:${password}@`), 'no password in the logs');
  });

  it('--retry-unroutable retries a row nothing is bound for, and publishes it once bound', async () => {
    const exchange = await broker.exchange('late', 'direct');
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db
      .transaction()
      .execute((trx) => writer.add(trx, { exchange, routingKey: 'later', payload: { n: 1 } }));
    const relay = startCli([
      'relay',
      '--schema',
      t.schema,
      '--retry-unroutable',
      '--max-attempts',
      '1000',
      '--retry-initial',
      '20ms',
      '--retry-max',
      '100ms',
    ]);
    try {
      await waitFor('the row returned twice', async () => {
        const { rows } = await t.pool.query<{ n: number }>(
          `SELECT coalesce(max(attempts), 0)::int AS n FROM "${t.schema}".outbox`,
        );
        return rows[0]!.n >= 2;
      });
      assert.equal(await t.count('outbox_parked'), 0, 'parked at once');
      const queue = await broker.queue('later', exchange, 'later');
      await broker.waitForDepth(queue, 1);
      await waitFor('the outbox to be empty', async () => (await t.count()) === 0);
      assert.equal(await t.count('outbox_parked'), 0);
    } finally {
      relay.child.kill('SIGTERM');
      assert.equal((await relay.exited()).code, 0);
    }
  });
});

describe('outboxkit relay against the nodes of a cluster', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('cli_urls');
    broker = await TestBroker.open();
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  // Port 1 refuses: a node that is down. The relay must go on to the next one.
  const down = (() => {
    const url = new URL(AMQP_URL);
    url.port = '1';
    return url.toString();
  })();

  const cases: { how: string; args: (schema: string) => string[]; env: () => NodeJS.ProcessEnv }[] =
    [
      {
        how: 'AMQP_URL with comma-separated URLs',
        args: (schema) => ['relay', '--schema', schema],
        env: () => ({ ...ENV, AMQP_URL: `${down}, ${AMQP_URL}` }),
      },
      {
        how: '--amqp-url given once per node',
        args: (schema) => ['relay', '--schema', schema, '--amqp-url', down, '--amqp-url', AMQP_URL],
        env: () => withoutEnv('AMQP_URL'),
      },
    ];
  for (const { how, args, env } of cases) {
    it(`fails over from a node that is down: ${how}`, async () => {
      const exchange = await broker.exchange(`urls-${cases.findIndex((c) => c.how === how)}`);
      const queue = await broker.queue(`urls-${cases.findIndex((c) => c.how === how)}`, exchange);
      const writer = new OutboxWriter({ schema: t.schema });
      await t.db
        .transaction()
        .execute((trx) => writer.add(trx, { exchange, routingKey: 'k', payload: { how } }));
      const relay = startCli(args(t.schema), env());
      await broker.waitForDepth(queue, 1);
      relay.child.kill('SIGTERM');
      const outcome = await relay.exited();
      assert.equal(outcome.code, 0, outcome.stderr);
      const starting = outcome.stderr
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { message: string; amqp?: string[] })
        .find((l) => l.message === 'relay starting');
      assert.equal(starting?.amqp?.length, 2, outcome.stderr);
    });
  }
});

describe('outboxkit duration flags', () => {
  it('take the units dead-letters --older-than takes: ms, s, m, h and d', () => {
    // `--poll-interval 1h` was refused while `--older-than 2h` was taken (a probe).
    assert.equal(durationOf('--stats-interval', '1h'), 3_600_000);
    assert.equal(durationOf('--stats-interval', '1d'), 86_400_000);
    assert.equal(durationOf('--stats-interval', '1.5s'), 1500);
    assert.throws(() => durationOf('--stop-timeout', '30d'), /must be at most/);
  });
});

describe('outboxkit command line errors', () => {
  const cases: { args: string[]; env?: NodeJS.ProcessEnv; says: RegExp }[] = [
    { args: ['launch'], says: /unknown command "launch"; the commands are migrate, relay, status/ },
    { args: ['stauts'], says: /unknown command "stauts"; did you mean status\?; the commands are/ },
    { args: ['status', '--verbose'], says: /Unknown option '--verbose'/ },
    // Where arguments are taken too, a misspelt flag got Node's advice to put it after "--".
    {
      args: ['dead-letters', 'purge', '--reasn', 'x'],
      says: /Unknown option '--reasn'; did you mean --reason\?$/m,
    },
    { args: ['migrate', 'now'], says: /Unexpected argument 'now'/ },
    {
      args: ['relay'],
      env: withoutEnv('AMQP_URL'),
      says: /no AMQP_URL: set it or pass --amqp-url/,
    },
    {
      args: ['migrate'],
      env: withoutEnv('DATABASE_URL'),
      says: /no DATABASE_URL: set it or pass --database-url/,
    },
    {
      args: ['status', '--database-url', 'mysql://me:secret@localhost/db'],
      says: /must start with postgres:\/\/ or postgresql:\/\/, got mysql:\/\/me:\*\*\*@localhost\/db/,
    },
    // One slash: the driver connected to localhost with "user:password@host/db" as the database
    // name, and the refusal printed the password (a security probe); nor is a value without a
    // scheme echoed, nor one with spaces around it.
    {
      args: ['status', '--database-url', 'postgres:/me:Zebra42@db.invalid/prod'],
      says: /--database-url \/ DATABASE_URL must start with postgres:\/\/ or postgresql:\/\/, got something else$/m,
    },
    {
      args: ['migrate', '--database-url', 'me:Zebra42@127.0.0.1:5432/prod'],
      says: /must start with postgres:\/\/ or postgresql:\/\/, got something else$/m,
    },
    {
      args: ['status', '--database-url', ' postgres://me:Zebra42@127.0.0.1:5432/prod'],
      says: /got a URL with spaces around it$/m,
    },
    {
      args: ['dead-letters', 'list', '--queue', 'q', '--amqp-url', 'amqp:/me:Zebra42@h/prod'],
      says: /--amqp-url \/ AMQP_URL must start with amqp:\/\/ or amqps:\/\/, got something else$/m,
    },
    { args: ['relay', '--batch-size', 'many'], says: /--batch-size must be a positive integer/ },
    { args: ['relay', '--key-run-size', '0'], says: /--key-run-size must be a positive integer/ },
    // Seconds bare, as RabbitMQ counts it, or with a unit as the other time flags (a probe tried 10s).
    {
      args: ['relay', '--heartbeat', '1500ms'],
      says: /--heartbeat is in whole seconds, got "1500ms"/,
    },
    {
      args: ['relay', '--heartbeat', '30s', '--publish-timeout', '10s'],
      says: /--publish-timeout must be at least twice the heartbeat/,
    },
    // A negative value is the value's fault, not an ambiguous flag.
    {
      args: ['relay', '--concurrency', '-1'],
      says: /--concurrency must be a positive integer, got "-1"/,
    },
    // Without a command, the usage goes to stderr with the status of a wrong command line.
    { args: [], says: /^Usage: outboxkit <command>/ },
    {
      args: ['relay', '--max-batch-bytes', '4mb'],
      says: /--max-batch-bytes must be a positive integer/,
    },
    { args: ['relay', '--poll-interval', 'soon'], says: /--poll-interval must be a duration/ },
    { args: ['relay', '--stop-timeout', '0'], says: /--stop-timeout must be a duration above 0/ },
    {
      args: ['relay', '--amqp-url', 'amqp://guest:guest@127.0.0.1:5672/?heartbeat=0'],
      says: /heartbeat=0 turns heartbeats off.*--heartbeat/,
    },
    {
      args: ['dead-letters', 'list', '--queue', 'billing', '--to', 'exchange'],
      says: /--to says where a replay sends dead letters; list does not take it/,
    },
    {
      args: ['relay', '--poll-interval', '1.5'],
      says: /--poll-interval without a unit is in milliseconds, and "1.5" is not a whole number of them: give a unit \(1\.5s\)/,
    },
    {
      args: ['relay', '--heartbeat', '30', '--publish-timeout', '10s'],
      says: /--publish-timeout must be at least twice the heartbeat/,
    },
    {
      args: ['relay', '--retry-initial', '2s', '--retry-max', '1s'],
      says: /--retry-max must be at least --retry-initial/,
    },
    {
      args: ['relay', '--max-message-bytes', '0'],
      says: /--max-message-bytes must be a positive integer/,
    },
    {
      args: ['relay', '--log-level', 'loud'],
      says: /--log-level must be one of debug, info, warn/,
    },
    {
      args: ['migrate', '--schema', 'x'.repeat(60)],
      says: /--schema must be a name of 1 to 53 bytes/,
    },
    {
      args: ['relay', '--stop-timeout', '99999999999m'],
      says: /--stop-timeout must be at most 2147483647 ms \(about 24\.8 days\)/,
    },
    {
      args: ['relay', '--stats-interval', '30000000s'],
      says: /--stats-interval must be at most 2147483647 ms/,
    },
    {
      args: ['relay', '--publish-timeout', '1073737s'],
      says: /--publish-timeout must be at most 1073736823 ms: .*idle_in_transaction_session_timeout/,
    },
    {
      args: ['relay', '--schema', 'one', '--schema', 'two'],
      says: /--schema was given twice; it takes one value/,
    },
    {
      args: ['dead-letters', 'list', '--queue', 'q'],
      env: { ...ENV, AMQP_URL: `${AMQP_URL},not a url` },
      says: /--amqp-url \/ AMQP_URL is not a URL/,
    },
  ];
  for (const { args, env, says } of cases) {
    it(`exits 2 for \`outboxkit ${args.join(' ')}\``, async () => {
      const run = await runCli(args, env);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, says);
      assert.doesNotMatch(run.stderr, /secret|Zebra42/);
    });
  }

  it('is an executable script: tsc kept the shebang', async () => {
    const source = await readFile(MAIN, 'utf8');
    assert.equal(source.split('\n', 1)[0], '#!/usr/bin/env node');
  });

  it('prints help for each command and exits 0', async () => {
    for (const command of ['migrate', 'relay', 'status']) {
      const run = await runCli([command, '--help']);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^Usage: outboxkit ${command} \\[options\\]`));
    }
    const main = await runCli(['--help']);
    assert.equal(main.code, 0);
    assert.match(main.stdout, /^Usage: outboxkit <command>/);
    // As git and npm do (a first-hour probe got the general usage).
    const relay = await runCli(['help', 'relay']);
    assert.equal(relay.code, 0, relay.stderr);
    assert.match(relay.stdout, /^Usage: outboxkit relay \[options\]/);
  });
});
