import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { OutboxListener } from '../src/relay/outbox-listener.js';
import { silentLogger } from '../src/util/logger.js';
import { DATABASE_URL } from './support/env.js';
import { uniqueName } from './support/test-database.js';
import { waitFor } from './support/wait-for.js';

describe('OutboxListener', () => {
  let admin: pg.Pool;
  before(() => {
    admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    admin.on('error', () => {});
  });
  after(async () => {
    await admin.end();
  });

  it('reconnects 20 times without piling listeners on its stop signal', async () => {
    const applicationName = uniqueName('okt_listen');
    const url = new URL(DATABASE_URL);
    url.searchParams.set('application_name', applicationName);
    const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
    pool.on('error', () => {});
    const channel = uniqueName('okt_channel');
    let wakes = 0;
    const listener = new OutboxListener(
      pool,
      { listenSql: `LISTEN ${channel}`, name: channel },
      () => {
        wakes += 1;
      },
      silentLogger,
      { backoff: { initialMs: 1, maxMs: 5 }, pollIntervalMs: 1000 },
    );
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => {
      if (warning.name === 'MaxListenersExceededWarning') warnings.push(warning);
    };
    process.on('warning', onWarning);
    // Every 'abort' listener added to and removed from any AbortSignal, to see how many stay.
    const live = new Map<EventTarget, number>();
    let most = 0;
    const add = EventTarget.prototype.addEventListener;
    const remove = EventTarget.prototype.removeEventListener;
    EventTarget.prototype.addEventListener = function (this: EventTarget, type, ...rest) {
      if (type === 'abort' && this instanceof AbortSignal) {
        const n = (live.get(this) ?? 0) + 1;
        live.set(this, n);
        most = Math.max(most, n);
      }
      return add.call(this, type, ...rest);
    } as typeof add;
    EventTarget.prototype.removeEventListener = function (this: EventTarget, type, ...rest) {
      if (type === 'abort' && this instanceof AbortSignal) {
        live.set(this, Math.max(0, (live.get(this) ?? 0) - 1));
      }
      return remove.call(this, type, ...rest);
    } as typeof remove;
    listener.start();
    try {
      for (let i = 1; i <= 20; i += 1) {
        await waitFor(`LISTEN connection ${i}`, async () => {
          if (listener.connects < i) return false;
          const { rows } = await admin.query(
            `SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query = $2`,
            [applicationName, `LISTEN ${channel}`],
          );
          return rows.length > 0;
        });
        // Only this test's LISTEN session, found by its unique application name (the pool's
        // other session sent the listener's check).
        const { rows } = await admin.query<{ n: number }>(
          `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))::int AS n
           FROM pg_stat_activity
           WHERE application_name = $1 AND query = $2`,
          [applicationName, `LISTEN ${channel}`],
        );
        assert.equal(rows[0]!.n, 1, `LISTEN session ${i} not found`);
      }
      await waitFor('the 21st LISTEN connection', () => listener.connects >= 21);
      // One wake-up per connection: notifications sent while it was away are lost for good.
      assert.ok(wakes >= 21, `${wakes} wake-ups`);
    } finally {
      await listener.stop();
      EventTarget.prototype.addEventListener = add;
      EventTarget.prototype.removeEventListener = remove;
      process.off('warning', onWarning);
      await pool.end();
    }
    // Warnings are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      warnings.map((w) => w.message),
      [],
    );
    assert.ok(most <= 2, `${most} abort listeners on one signal at once`);
  });

  // Behind PgBouncer in transaction mode the LISTEN lands on a server session that other clients
  // then use: it succeeds, and nothing is ever heard. The relay said nothing and only polled.
  for (const swallowed of [false, true]) {
    it(
      swallowed
        ? 'warns once when its LISTEN hears nothing, as behind a pooler in transaction mode'
        : 'hears its own notification on a direct connection, and says nothing',
      async () => {
        const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
        pool.on('error', () => {});
        if (swallowed) {
          // What the pooler does to it: the statement succeeds, on a session this client leaves.
          pool.on('connect', (client) => {
            const query = client.query.bind(client) as (...args: unknown[]) => unknown;
            (client as unknown as { query: unknown }).query = (...args: unknown[]) =>
              typeof args[0] === 'string' && args[0].startsWith('LISTEN ')
                ? query('SELECT 1', ...args.slice(1))
                : query(...args);
          });
        }
        const channel = uniqueName('okt_check');
        const warnings: Array<{ message: string; context?: Record<string, unknown> }> = [];
        const logger = {
          ...silentLogger,
          warn: (message: string, context?: Record<string, unknown>) => {
            warnings.push({ message, ...(context && { context }) });
          },
        };
        const listener = new OutboxListener(
          pool,
          { listenSql: `LISTEN ${channel}`, name: channel },
          () => {},
          logger,
          { backoff: { initialMs: 5, maxMs: 20 }, pollIntervalMs: 1000, checkMs: 300 },
        );
        listener.start();
        try {
          await waitFor('the check done', () => listener.hearsNotifications !== undefined, 10_000);
          assert.equal(listener.hearsNotifications, !swallowed);
          if (swallowed) {
            assert.equal(warnings.length, 1);
            assert.match(warnings[0]!.message, /LISTEN does not hear notifications/);
            assert.match(String(warnings[0]!.context?.fix), /PgBouncer/);
          } else {
            assert.deepEqual(warnings, []);
          }
        } finally {
          await listener.stop();
          await pool.end();
        }
      },
    );
  }
});
