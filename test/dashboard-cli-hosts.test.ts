import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { networkInterfaces } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { statusWithHost } from './support/dashboard-server.js';
import { DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

describe('dashboard: the command listening on every interface', () => {
  let t: TestDatabase;
  let child: ChildProcess | undefined;
  before(async () => {
    t = await testDatabase('dash_any');
  });
  after(async () => {
    child?.kill('SIGKILL');
    await t.close();
  });

  it('still answers only loopback names and this machine’s addresses, not a rebinding domain', async () => {
    child = spawn(
      process.execPath,
      [
        MAIN,
        'dashboard',
        '--host',
        '0.0.0.0',
        '--port',
        '0',
        '--schema',
        t.schema,
        '--allow-replay',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DATABASE_URL } },
    );
    let stdout = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const exited = once(child, 'close');
    const port = await waitFor('the URL', () => /http:\/\/0\.0\.0\.0:(\d+)\//.exec(stdout)?.[1]);
    const url = `http://127.0.0.1:${port}/api/status`;

    assert.equal(await statusWithHost(url, `rebind.attacker.example:${port}`), 403);
    assert.equal(await statusWithHost(url, `127.0.0.1:${port}`), 200);
    assert.equal(await statusWithHost(url, `localhost:${port}`), 200);
    const lan = Object.values(networkInterfaces())
      .flat()
      .find((a) => a !== undefined && !a.internal && a.family === 'IPv4');
    if (lan) assert.equal(await statusWithHost(url, `${lan.address}:${port}`), 200, lan.address);

    // Replay on every interface without a login is allowed, and said (a first-hour probe).
    assert.match(stderr, /--allow-replay on --host 0\.0\.0\.0: the dashboard has no login/);
    child.kill('SIGINT');
    assert.equal((await exited)[0], 0);
    child = undefined;
  });
});
