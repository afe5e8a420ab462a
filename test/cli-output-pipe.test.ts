// The CLI exited with process.exit() as soon as a command returned, while Node still held what
// a pipe had no room for: `outboxkit dead-letters list --json | jq` got the first 64 KiB, and
// the exit status said 0.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const ROWS = 1500;

describe('the CLI writing to a slow pipe', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('cli_pipe');
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db.transaction().execute((trx) =>
      writer.addMany(
        trx,
        Array.from({ length: ROWS }, (_, i) => ({
          exchange: 'gone',
          routingKey: 'k',
          payload: { i },
          messageId: `pipe-${i}`,
        })),
      ),
    );
    await parkOutboxRows(t, 'exchange not found');
  });
  after(() => t.close());

  it('writes all of a long listing before it exits', async () => {
    const child = spawn(
      process.execPath,
      [MAIN, 'dead-letters', 'list', '--schema', t.schema, '--limit', '5000', '--json'],
      { env: { ...process.env, DATABASE_URL, AMQP_URL }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // A reader that is not there yet, as a slow `jq` or `less` is: the pipe fills.
    child.stdout.pause();
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    // Once the child has filled the pipe (it is blocked on it or has exited), read it all.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stdout.resume();
    assert.equal(await exited, 0, stderr);
    const output = Buffer.concat(chunks);
    assert.ok(output.length > 128 * 1024, `${output.length} bytes`);
    const rows = JSON.parse(output.toString()) as unknown[];
    assert.equal(rows.length, ROWS);
  });

  // `| head -c 100`: the reader closes the pipe early. The CLI died with an unhandled EPIPE and
  // its stack trace, exit status 1.
  it('ends quietly when the reader closes the pipe early', async () => {
    const child = spawn(
      process.execPath,
      [MAIN, 'dead-letters', 'list', '--schema', t.schema, '--limit', '5000', '--json'],
      { env: { ...process.env, DATABASE_URL, AMQP_URL }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.stdout.destroy();
    assert.equal(await exited, 0, stderr);
    assert.equal(stderr, '');
  });
});
