import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';

describe("a relay on the application's pool", () => {
  const bed = relayTestBed('sharedpool');

  const warningsWith = async (options: { max: number; concurrency?: number; listen?: boolean }) => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: options.max });
    const logger = recordingLogger();
    try {
      const relay = await bed.start({
        pool,
        logger,
        ...(options.concurrency !== undefined && { concurrency: options.concurrency }),
        ...(options.listen !== undefined && { listen: options.listen }),
      });
      await relay.stop();
    } finally {
      await pool.end();
    }
    return logger.lines.filter((l) => l.level === 'warn' && /can hold/.test(l.text));
  };

  it("warns at start when the relay could take every connection of pg's default pool size", async () => {
    const [warning, ...more] = await warningsWith({ max: 10 });
    assert.ok(warning, 'no warning');
    assert.equal(more.length, 0);
    assert.match(warning.text, /hold 10 connections/);
    assert.match(warning.text, /has 10/);
    assert.match(warning.text, /databaseUrl/);
  });

  it('refuses a pool of one connection with LISTEN on, which left the lanes none: nothing was published, no error', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
    try {
      await assert.rejects(bed.start({ pool }), {
        name: 'ConfigurationError',
        option: 'pool',
        message: /LISTEN keeps .* `listen: false`/,
      });
      // Without LISTEN it publishes, one connection at a time.
      const exchange = await bed.broker.exchange('one-connection');
      const queue = await bed.broker.queue('one-connection', exchange);
      await writeMessages(bed.t, numberedMessages(exchange, 5, 'one-'));
      await bed.start({ pool, listen: false, logger: recordingLogger() });
      await bed.broker.waitForDepth(queue, 5);
    } finally {
      await pool.end();
    }
  });

  it('is quiet when the pool is larger than what the relay holds at most', async () => {
    assert.deepEqual(await warningsWith({ max: 11 }), []);
    // Two lanes hold four, the retry lane one; no LISTEN.
    assert.deepEqual(await warningsWith({ max: 6, concurrency: 2, listen: false }), []);
    assert.equal((await warningsWith({ max: 5, concurrency: 2, listen: false })).length, 1);
  });
});
