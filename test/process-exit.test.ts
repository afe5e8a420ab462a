import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('./support/stop-then-exit.js', import.meta.url));

/**
 * Runs the script in `mode` and returns how long its process lived after the stop resolved.
 * A stop that leaves a timer or a socket behind keeps a script, a CLI command or a test file
 * running that long after its last line.
 */
function exitDelayAfterStop(mode: 'relay' | 'nest' | 'hung-handler'): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--enable-source-maps', script, mode], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stoppedAt: number | undefined;
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (stoppedAt === undefined && output.includes('stopped')) stoppedAt = performance.now();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0 || stoppedAt === undefined) {
        reject(new Error(`${mode}: exited with ${code}\n${output}`));
        return;
      }
      resolve(performance.now() - stoppedAt);
    });
  });
}

describe('the process exits once outboxkit is stopped', () => {
  // The publisher channel's close was left to a referenced 2 s bound after the connection, which
  // ends the channel, had closed: its close handshake never answers then.
  it('after relay.stop()', async () => {
    const delay = await exitDelayAfterStop('relay');
    // 1,965 ms before the fix, 30-40 after: room for a loaded machine.
    assert.ok(delay < 1500, `exited ${Math.round(delay)} ms after the stop`);
  });

  // The module's own pool, read by the status but never by Kysely, stayed open until pg's idle
  // timeout (10 s).
  it('after app.close() of the Nest module (relay, no consumers, a status read)', async () => {
    const delay = await exitDelayAfterStop('nest');
    // 10 s (the pool) or 2 s (the channel's close) before the fixes.
    assert.ok(delay < 1500, `exited ${Math.round(delay)} ms after the close`);
  });

  // The handler's time-out timer was cleared only when the handler settled: given up at the
  // stop deadline, it kept the process up for the rest of its `timeoutMs` (20 s here).
  it('after host.stop() that gave up a handler that never settles', async () => {
    const delay = await exitDelayAfterStop('hung-handler');
    assert.ok(delay < 1500, `exited ${Math.round(delay)} ms after the stop`);
  });
});
