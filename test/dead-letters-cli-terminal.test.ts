import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { TestBroker } from './support/test-broker.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const ENV: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL, AMQP_URL };

async function cli(...args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await promisify(execFile)(process.execPath, [MAIN, ...args], {
      env: ENV,
      timeout: 30_000,
    });
    return { code: 0, stdout };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    assert.fail(`exit ${e.code}: ${e.stderr}`);
  }
}

/** Anything a terminal would act on rather than print: C0 and C1 controls (bar newline), DEL. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is its purpose
const TERMINAL_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe('outboxkit dead-letters: what a dead letter holds cannot drive the terminal', () => {
  let broker: TestBroker;
  let queue: string;
  before(async () => {
    broker = await TestBroker.open();
    queue = await broker.queue('tty');
    const dlq = await broker.queue('tty.dlq');
    // Clears the screen, sets the window title, rings the bell, hides text, and a C1 CSI.
    const hostile = '\u001b[2J\u001b]0;pwned\u0007line one\r\nline two\u001b[8mhidden\u009b31m';
    broker.channel.sendToQueue(
      dlq,
      Buffer.from(JSON.stringify({ note: 'x' }).replace('x', hostile)),
      {
        messageId: 'evil\u001b[1A-1',
        contentType: 'text/plain',
        headers: {
          [OUTBOXKIT_HEADERS.reason]: 'permanent-error',
          [OUTBOXKIT_HEADERS.error]: 'failed:\u001b[31m red\u0007\nsecond line\u202eetouq',
        },
      },
    );
    await broker.waitForDepth(dlq, 1);
  });
  after(() => broker.close());

  it('show escapes control characters and keeps newlines as line breaks', async () => {
    const { stdout } = await cli('dead-letters', 'show', 'evil\u001b[1A-1', '--queue', queue);
    assert.doesNotMatch(stdout, TERMINAL_CONTROL, JSON.stringify(stdout));
    // Visible, and recognisable for what they were.
    assert.match(stdout, /\\x1b\[2J\\x1b\]0;pwned\\x07line one/);
    assert.match(stdout, /line one\n.*line two\\x1b\[8mhidden\\x9b31m/);
    assert.match(stdout, /messageId: evil\\x1b\[1A-1/);
    assert.match(stdout, /failed:\\x1b\[31m red\\x07\n\s+second line\\u202eetouq/);
  });

  it('list and --json print no control characters either', async () => {
    const list = await cli('dead-letters', 'list', '--queue', queue);
    assert.doesNotMatch(list.stdout, TERMINAL_CONTROL, JSON.stringify(list.stdout));
    assert.match(list.stdout, /evil\\x1b\[1A-1/);
    const json = await cli('dead-letters', 'show', 'evil\u001b[1A-1', '--queue', queue, '--json');
    assert.doesNotMatch(json.stdout, TERMINAL_CONTROL, JSON.stringify(json.stdout));
    // Still JSON, and the same text once parsed.
    const parsed = JSON.parse(json.stdout) as { error: string; messageId: string };
    assert.equal(parsed.messageId, 'evil\u001b[1A-1');
    assert.equal(parsed.error, 'failed:\u001b[31m red\u0007\nsecond line\u202eetouq');
  });
});
