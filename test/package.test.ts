import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { deleteConsumerTopology } from './support/delete-consumer-topology.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';

/**
 * The package as a user gets it: packed by `npm pack` (so by the `prepack` build), installed
 * from the tarball into an empty project with only its required peers, and used by package
 * name from a TypeScript program compiled under --strict: the README's Quick start (migrate,
 * write in a transaction, relay) and the consumer of docs/consumer.md (validate, business key,
 * a duplicate handled once, a PermanentError dead-lettered).
 */

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** Never copied into the packing tree: built output, installs, CI's own Node installs. */
const NOT_COPIED = new Set(['node_modules', 'dist', '.git', '.ci']);

async function npm(cwd: string, args: string[]) {
  // --prefer-offline: the peers are in npm's cache once the project was installed, so this
  // mostly reads the cache; anything missing still comes from the registry.
  return run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], {
    cwd,
    maxBuffer: 16 * 1024 * 1024,
    env: { ...process.env, npm_config_update_notifier: 'false' },
  });
}

async function lockedVersion(name: string): Promise<string> {
  const lock = JSON.parse(await readFile(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version: string }>;
  };
  const entry = lock.packages[`node_modules/${name}`];
  assert.ok(entry, `${name} is in package-lock.json`);
  return entry.version;
}

/**
 * An empty project `name` in `work` with the package installed from `tarball`, beside only the
 * required peers (kysely, pg, amqplib) at the locked versions, so they come from npm's cache,
 * and the types a TypeScript user of pg and Node has. `manifest` adds to its package.json.
 */
async function userProject(
  work: string,
  name: string,
  manifest: object,
  tarball: string,
): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  await writeFile(
    join(dir, 'package.json'),
    `${JSON.stringify({ name: `outboxkit-${name}`, private: true, ...manifest }, null, 2)}\n`,
  );
  const peers = await Promise.all(
    ['kysely', 'pg', 'amqplib', '@types/pg', '@types/node'].map(
      async (peer) => `${peer}@${await lockedVersion(peer)}`,
    ),
  );
  await npm(dir, ['install', tarball, ...peers]);
  return dir;
}

/** A strict NodeNext tsconfig.json for `file`, with `extra` compiler options. */
async function writeTsconfig(dir: string, file: string, extra: object): Promise<void> {
  const compilerOptions = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    types: ['node'],
    ...extra,
  };
  await writeFile(
    join(dir, 'tsconfig.json'),
    `${JSON.stringify({ compilerOptions, files: [file] })}\n`,
  );
}

describe('the packed package, installed from its tarball into an empty project', () => {
  let work: string;
  let tarball: string;
  let files: string[];
  let app: string;
  const suffix = randomBytes(4).toString('hex');
  const schema = `pkg_${suffix}`;
  const exchange = `pkg.orders.${suffix}`;
  const consumer = `pkg.billing.${suffix}`;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'outboxkit-package-'));
    // Packed from a copy, so the prepack build never rewrites the dist/ that the other test
    // files of this run are loading.
    const tree = join(work, 'tree');
    await cp(ROOT, tree, {
      recursive: true,
      filter: (source) => {
        const path = relative(ROOT, source);
        return path === '' || !NOT_COPIED.has(path.split(/[\\/]/)[0]!);
      },
    });
    await symlink(join(ROOT, 'node_modules'), join(tree, 'node_modules'), 'dir');
    const packed = await npm(tree, ['pack', '--json', '--pack-destination', work]);
    const [result] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
    tarball = join(work, basename(result.filename));
    files = result.files.map((f) => f.path).sort();

    app = await userProject(work, 'app', { type: 'module' }, tarball);
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => pool.end());
    await deleteConsumerTopology([{ name: consumer, exchange }]);
  });

  it('ships the build, the migrations, the docs, the Grafana dashboard and the licence, and no source maps or sources', () => {
    for (const expected of [
      'package.json',
      'LICENSE',
      'README.md',
      'CHANGELOG.md',
      'docs/consumer.md',
      'dist/src/index.js',
      'dist/src/index.d.ts',
      'dist/src/cli/main.js',
      'migrations/0001_outbox.sql',
      'ops/grafana/outboxkit.json',
      'ops/prometheus/outboxkit-rules.yml',
    ]) {
      assert.ok(files.includes(expected), `${expected} is in the package`);
    }
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map') || /^(src|test|bench|examples)\//.test(f)),
      [],
    );
  });

  it('installs with no NestJS, and its README quick start and consumer run by package name', async () => {
    const installed = JSON.parse(
      await readFile(join(app, 'node_modules', 'outboxkit', 'package.json'), 'utf8'),
    ) as { version: string };
    assert.ok(installed.version);
    await assert.rejects(readFile(join(app, 'node_modules', '@nestjs', 'core', 'package.json')));

    await writeFile(join(app, 'quick-start.ts'), QUICK_START);
    await writeTsconfig(app, 'quick-start.ts', { verbatimModuleSyntax: true, outDir: 'out' });
    // Type-checked against the package's own declarations, as a user's editor sees them.
    await run(process.execPath, [TSC, '-p', app], { cwd: app }).catch(
      (error: { stdout?: string }) => {
        assert.fail(`quick-start.ts does not compile against the package:\n${error.stdout}`);
      },
    );
    const { stdout } = await run(process.execPath, [join(app, 'out', 'quick-start.js')], {
      cwd: app,
      env: {
        ...process.env,
        DATABASE_URL,
        AMQP_URL,
        SCHEMA: schema,
        EXCHANGE: exchange,
        CONSUMER: consumer,
      },
      timeout: 60_000,
    });
    assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), {
      invoices: ['o-1'],
      outbox: 0,
      handled: 1,
      duplicates: 1,
      deadLettered: 1,
    });
  });

  it('type-checks in a CommonJS project on kysely 0.28, whose Kysely typings are the other build', async () => {
    assert.match(await lockedVersion('kysely'), /^0\.28\./, 'the locked kysely ships both builds');
    const cjs = await userProject(work, 'cjs', {}, tarball);
    await writeFile(join(cjs, 'main.ts'), COMMONJS_USER);
    await writeTsconfig(cjs, 'main.ts', { esModuleInterop: true, noEmit: true });
    await run(process.execPath, [TSC, '-p', cjs], { cwd: cjs }).catch(
      (error: { stdout?: string }) => {
        assert.fail(`main.ts does not compile as CommonJS against the package:\n${error.stdout}`);
      },
    );
  });
});

/**
 * A CommonJS user's program on kysely 0.28, whose own `kysely` resolves to the CommonJS typings
 * while outboxkit's resolve to the ES module ones: the writer and the host take its objects by
 * shape, and a `Kysely` passed where the transaction belongs is still refused.
 */
const COMMONJS_USER = `
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { ConsumerHost, defineConsumer, OutboxWriter } from 'outboxkit';

interface Database {
  invoices: { order_id: string };
}

const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool() }) });
const outbox = new OutboxWriter();
export async function placeOrder(): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('invoices').values({ order_id: 'o-1' }).execute();
    await outbox.add(trx, { exchange: 'orders', routingKey: 'order.placed', payload: {} });
  });
  // @ts-expect-error the instance, not a transaction: the row would commit on its own
  await outbox.add(db, { exchange: 'orders', routingKey: 'order.placed', payload: {} });
}
const invoices = defineConsumer<{ orderId: string }, Database>({
  name: 'billing',
  exchange: 'orders',
  async handler(order, { trx }) {
    await trx.insertInto('invoices').values({ order_id: order.orderId }).execute();
  },
});
export const host = new ConsumerHost({ db, amqpUrl: 'amqp://localhost', consumers: [invoices] });
`;

/** A user's program: only the package's public entry point and its peers. */
const QUICK_START = `
import { setTimeout as sleep } from 'node:timers/promises';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import {
  ConsumerHost,
  defineConsumer,
  migrate,
  OutboxRelay,
  OutboxWriter,
  PermanentError,
} from 'outboxkit';

const databaseUrl = process.env.DATABASE_URL!;
const amqpUrl = process.env.AMQP_URL!;
const schema = process.env.SCHEMA!;
const exchange = process.env.EXCHANGE!;
const name = process.env.CONSUMER!;

interface Database {
  orders: { id: string; customer: string };
  customers: { id: string };
  invoices: { order_id: string };
}

const pool = new pg.Pool({ connectionString: databaseUrl });
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }).withSchema(schema);

await migrate(pool, { schema });
await pool.query(\`CREATE TABLE "\${schema}".orders (id text PRIMARY KEY, customer text NOT NULL)\`);
await pool.query(\`CREATE TABLE "\${schema}".customers (id text PRIMARY KEY)\`);
await pool.query(\`CREATE TABLE "\${schema}".invoices (order_id text PRIMARY KEY)\`);
await pool.query(\`INSERT INTO "\${schema}".customers VALUES ('c-1')\`);

const orderPlaced = defineConsumer<{ orderId: string; customer: string }, Database>({
  name,
  exchange,
  routingKeys: ['order.placed'],
  validate: (p) => {
    const o = p as { orderId?: unknown; customer?: unknown };
    if (typeof o.orderId !== 'string' || typeof o.customer !== 'string') throw new Error('not an order');
    return { orderId: o.orderId, customer: o.customer };
  },
  businessKey: (p) => p.orderId,
  async handler(order, { trx }) {
    const customer = await trx.selectFrom('customers').selectAll().where('id', '=', order.customer).executeTakeFirst();
    if (!customer) throw new PermanentError('no such customer');
    await trx.insertInto('invoices').values({ order_id: order.orderId }).execute();
  },
});

// The consumer declares its exchange, so the relay's first publish finds it.
const host = new ConsumerHost({ db, amqpUrl, consumers: [orderPlaced], schema });
await host.start();

const outbox = new OutboxWriter({ schema });
for (const order of [
  { id: 'o-1', customer: 'c-1' },
  { id: 'o-1', customer: 'c-1' },
  { id: 'o-2', customer: 'nobody' },
]) {
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('orders').values(order).onConflict((c) => c.doNothing()).execute();
    await outbox.add(trx, {
      exchange,
      routingKey: 'order.placed',
      payload: { orderId: order.id, customer: order.customer },
    });
  });
}

const relay = new OutboxRelay({ databaseUrl, amqpUrl, schema });
await relay.start();

const deadline = Date.now() + 30_000;
const settled = () => {
  const s = host.stats(name);
  return s.handled + s.duplicates + s.deadLettered >= 3;
};
while (!settled()) {
  if (Date.now() > deadline) throw new Error(\`not settled in 30 s: \${JSON.stringify(host.stats(name))}\`);
  await sleep(50);
}
await relay.stop();
await host.stop();

const invoices = await db.selectFrom('invoices').select('order_id').execute();
const { rows } = await pool.query(\`SELECT count(*)::int AS n FROM "\${schema}".outbox\`);
const { handled, duplicates, deadLettered } = host.stats(name);
await db.destroy();
console.log(JSON.stringify({ invoices: invoices.map((i) => i.order_id), outbox: rows[0].n, handled, duplicates, deadLettered }));
`;
