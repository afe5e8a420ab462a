import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { CLOSE_TIMEOUT_MS } from '../src/amqp/close-within.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { waitFor } from './support/wait-for.js';

/**
 * Postgres stops answering while the host's retention clean-up waits for its DELETE: stop()
 * waited for that DELETE without a bound (still waiting after 295 s in the probe).
 */
describe('consumer host: stop while Postgres hangs', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('chung');
  });
  after(() => f.close());

  it('stops within its bounds though the retention clean-up never gets an answer', async () => {
    const url = new URL(DATABASE_URL);
    const proxy = await TcpProxy.start(url.hostname, Number(url.port || 5432));
    const pool = new pg.Pool({ connectionString: proxy.url(DATABASE_URL), max: 4 });
    pool.on('error', () => {});
    // The proxy's close resets the clean-up's connection while its DELETE is out.
    pool.on('connect', (client) => client.on('error', () => {}));
    const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
    try {
      const stopTimeoutMs = 1000;
      const host = await f.host([f.definition('hung', f.recordEffect)], {
        db,
        retention: { intervalMs: 50 },
        stopTimeoutMs,
      });
      proxy.pause();
      // The clean-up's next DELETE is sent, and never answered.
      await waitFor('a statement in flight', () => pool.totalCount > pool.idleCount);
      const began = performance.now();
      const stopped = await Promise.race([
        host.stop().then(() => true),
        new Promise<false>((resolve) => setTimeout(() => resolve(false), 15_000).unref()),
      ]);
      const took = performance.now() - began;
      assert.ok(stopped, 'stop() did not return within 15 s');
      assert.ok(took < stopTimeoutMs + 2 * CLOSE_TIMEOUT_MS + 1000, `stop took ${took} ms`);
    } finally {
      proxy.heal();
      await proxy.close();
      await db.destroy().catch(() => {});
    }
  });
});
