import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

const run = promisify(execFile);
const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');

/**
 * An application bundle that took outboxkit's modules in without the files beside them (the
 * SQL migrations, the dashboard's script): a copy of the build alone, as such a bundle lays it
 * out. The relay's start checks used to read `migrations/` and failed every start with ENOENT.
 */
describe('outboxkit without its migrations/ folder or the dashboard script beside it', () => {
  let work: string;
  let t: TestDatabase;

  before(async () => {
    t = await testDatabase('bundle');
    work = await mkdtemp(join(tmpdir(), 'outboxkit-bundle-'));
    await cp(join(ROOT, 'dist', 'src'), join(work, 'dist', 'src'), { recursive: true });
    await rm(join(work, 'dist', 'src', 'dashboard', 'page', 'dashboard-script.js'));
    await symlink(join(ROOT, 'node_modules'), join(work, 'node_modules'), 'dir');
    await writeFile(join(work, 'package.json'), '{ "type": "module" }\n');
  });

  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
    await t.close();
  });

  /** Runs `body` as an ES module in the copy, with `index` its `dist/src/index.js`; its last line is JSON. */
  async function inCopy(body: string): Promise<unknown> {
    const script = join(work, `probe-${Math.random().toString(36).slice(2)}.mjs`);
    await writeFile(
      script,
      `import pg from 'pg';
import * as index from './dist/src/index.js';
import * as dashboard from './dist/src/dashboard/index.js';
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 3 });
const code = async (promise) => promise.then(() => 'ok', (e) => ({ code: e.code, message: e.message }));
try {
${body}
} finally {
  await pool.end();
}
`,
    );
    const { stdout } = await run(process.execPath, [script], {
      cwd: work,
      env: { ...process.env, DATABASE_URL, AMQP_URL, SCHEMA: t.schema },
      timeout: 60_000,
    });
    return JSON.parse(stdout.trim().split('\n').at(-1)!);
  }

  it('a relay starts on a migrated schema: the start checks know the shipped versions', async () => {
    const result = await inCopy(`
const relay = new index.OutboxRelay({ pool, amqpUrl: process.env.AMQP_URL, schema: process.env.SCHEMA });
const started = await code(relay.start());
await relay.stop();
console.log(JSON.stringify(started));`);
    assert.equal(result, 'ok');
  });

  it('migrate() says which folder is missing and where the docs say what to ship', async () => {
    const result = (await inCopy(`
console.log(JSON.stringify(await code(index.migrate(pool, { schema: process.env.SCHEMA + '_new' }))));`)) as {
      code: string;
      message: string;
    };
    assert.equal(result.code, 'migrations-missing');
    assert.ok(result.message.includes(join(work, 'migrations')), result.message);
    assert.match(result.message, /Bundling/);
  });

  it("the dashboard's page names the missing script and the docs' section", async () => {
    const result = (await inCopy(`
console.log(JSON.stringify(await code((async () => new dashboard.OutboxDashboard({ pool }))())));`)) as {
      code: string;
      message: string;
    };
    assert.equal(result.code, 'dashboard-script-missing');
    assert.match(result.message, /dashboard-script\.js is missing/);
    assert.match(result.message, /Bundling/);
  });
});
