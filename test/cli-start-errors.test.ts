import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CLI_MAIN, NodeChild } from './support/child-process.js';
import { parkMessages } from './support/dashboard-server.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';

const ENV: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL, AMQP_URL };
const children = new Set<NodeChild>();

async function cli(args: readonly string[], env = ENV) {
  const child = new NodeChild(CLI_MAIN, args, env);
  children.add(child);
  const { code } = await child.exited(20_000);
  return { code, stdout: child.stdout, stderr: child.stderr };
}

after(() => {
  // A relay that failed to refuse its start must not outlive the test.
  for (const child of children) child.kill();
});

describe('the CLI at start and on wrong input', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('cli_start');
  });
  after(() => t.close());

  it('relay on an unmigrated schema exits 1 at once, naming the migrate command', async () => {
    const schema = uniqueName('unmigrated');
    const began = Date.now();
    const { code, stderr } = await cli(['relay', '--schema', schema]);
    assert.equal(code, 1, stderr);
    assert.ok(Date.now() - began < 10_000);
    assert.match(stderr, new RegExp(`run \`outboxkit migrate --schema ${schema}\``));
    assert.doesNotMatch(stderr, /does not exist.*\n.*does not exist/s);
  });

  it('relay with a wrong RabbitMQ password exits 1, the password hidden', async () => {
    const url = new URL(AMQP_URL);
    url.password = 'wrong-secret';
    const { code, stderr } = await cli([
      'relay',
      '--schema',
      t.schema,
      '--amqp-url',
      url.toString(),
    ]);
    assert.equal(code, 1, stderr);
    assert.match(stderr, /403/);
    assert.doesNotMatch(stderr, /wrong-secret/);
  });

  it('suggests the flag meant', async () => {
    const { code, stderr } = await cli(['status', '--scheme', t.schema]);
    assert.equal(code, 2);
    assert.match(stderr, /Unknown option '--scheme'; did you mean --schema\?/);
    const far = await cli(['status', '--zzzzzz']);
    assert.equal(far.code, 2);
    assert.doesNotMatch(far.stderr, /did you mean/);
  });

  it('reports a dead letter not found without a "Postgres at" prefix', async () => {
    const { code, stderr } = await cli(['dead-letters', 'show', '987654321', '--schema', t.schema]);
    assert.equal(code, 1);
    assert.match(stderr, /987654321/);
    assert.doesNotMatch(stderr, /Postgres at/);
  });

  it('dead-letters list shows parked rows by id', async () => {
    const message = (exchange: string, n: number) => ({
      exchange,
      routingKey: 'k',
      messageId: uniqueName(`m${n}`),
      payload: { n },
    });
    // Ids rise while exchange names fall, and ids cross a digit boundary.
    const messages = Array.from({ length: 12 }, (_, i) =>
      message(`x${String.fromCharCode(122 - i)}`, i),
    );
    await parkMessages(t, messages);
    const { code, stdout, stderr } = await cli([
      'dead-letters',
      'list',
      '--json',
      '--schema',
      t.schema,
    ]);
    assert.equal(code, 0, stderr);
    const ids = (JSON.parse(stdout) as { id: string }[]).map((r) => BigInt(r.id));
    assert.equal(ids.length, 12);
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    const table = await cli(['dead-letters', 'list', '--schema', t.schema]);
    const tableIds = table.stdout
      .split('\n')
      .slice(1)
      .map((line) => line.split(/\s+/)[0])
      .filter((id): id is string => id !== undefined && /^\d+$/.test(id))
      .map(BigInt);
    assert.deepEqual(tableIds, ids);
  });
});
