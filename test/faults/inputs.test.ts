import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import type { PoolClient } from 'pg';
import { PermanentError } from '../../src/consumer/permanent-error.js';
import { AMQP_URL, DATABASE_URL } from '../support/env.js';
import { waitFor } from '../support/wait-for.js';
import { sleep } from './exec.js';
import { reapLeftovers } from './fault-processes.js';
import { printResults } from './fault-report.js';
import { type BusinessMessage, runScenario, withApplicationName } from './fault-scenario.js';

// Bad input and bad handlers: nothing is killed, the faults ride in the messages and in the
// handler's behaviour. Postgres and RabbitMQ are the machine's.
const databaseUrl = (applicationName: string) => withApplicationName(DATABASE_URL, applicationName);
const base = { databaseUrl, amqpUrl: AMQP_URL };

/** Counts the dead letters and parked rows by reason. */
function byReason(reasons: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of reasons) {
    const key = r.replace(/:.*$/, '');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

describe('faults: bad input and failing handlers', () => {
  before(async () => {
    await reapLeftovers();
  });
  after(() => {
    printResults('Fault suite: bad input and failing handlers');
  });

  it(
    'unroutable messages are parked with their reason, the rest delivered',
    { timeout: 60_000 },
    () =>
      runScenario({ ...base, name: 'unroutable messages (mandatory, returned)' }, async (sc) => {
        await sc.startConsumer();
        await sc.startRelay();
        await sc.traffic({
          total: 500,
          message: (i): Partial<BusinessMessage> =>
            i % 10 === 4 ? { fate: 'parked', routingKey: 'nowhere.bound' } : {},
        }).done;
        await sc.finish({
          evidence: (o) => {
            const unroutable = [...o.parked.values()].filter((r) =>
              r.startsWith('unroutable'),
            ).length;
            assert.equal(unroutable, 50, 'not every unroutable message was parked as such');
            return `${unroutable} returned (312 NO_ROUTE) and parked; their keys went on`;
          },
        });
      }),
  );

  it('malformed messages go to the dead-letter queue with their reason', { timeout: 60_000 }, () =>
    runScenario({ ...base, name: 'malformed messages' }, async (sc) => {
      await sc.startConsumer();
      await sc.startRelay();
      await sc.traffic({
        total: 500,
        message: (i): Partial<BusinessMessage> => {
          switch (i % 10) {
            case 1:
              return {
                fate: 'dead-letter',
                payload: () => Buffer.from('{"msgId": not json'),
                contentType: 'application/json',
              };
            case 2:
              return {
                fate: 'dead-letter',
                payload: () => Buffer.from('hello'),
                contentType: 'text/plain',
              };
            case 3:
              return {
                fate: 'dead-letter',
                payload: () => ({ hello: 'a valid JSON, not a ledger message' }),
              };
            default:
              return {};
          }
        },
      }).done;
      await sc.finish({
        evidence: (o) => {
          const reasons = byReason(o.deadLetters.values());
          assert.equal(reasons.get('invalid-json'), 50);
          assert.equal(reasons.get('unsupported-content-type'), 50);
          assert.equal(reasons.get('validation-failed'), 50);
          assert.equal(o.consumer.retried, 0, 'malformed input was retried');
          return `dead-lettered at once: ${[...reasons].map(([r, n]) => `${n} ${r}`).join(', ')}`;
        },
      });
    }),
  );

  for (const ordered of [true, false]) {
    const name = ordered
      ? 'handler failing transiently (ordered: in place)'
      : 'handler failing transiently (delay queues)';
    it(name, { timeout: 60_000 }, () =>
      runScenario(
        {
          ...base,
          name,
          ordered,
          consumer: {
            // The first two attempts of a flaky message fail, after writing their effect.
            after: async (_payload, context) => {
              if (context.routingKey === 'ledger.flaky' && context.attempt <= 2) {
                throw new Error('flaky downstream');
              }
            },
          },
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          await sc.traffic({
            total: 500,
            message: (i) => (i % 8 === 5 ? { routingKey: 'ledger.flaky' } : {}),
          }).done;
          const flaky = Array.from({ length: 500 }, (_, i) => i).filter((i) => i % 8 === 5).length;
          await sc.finish({
            evidence: (o) => {
              assert.equal(
                o.consumer.retried,
                2 * flaky,
                'not every flaky message was retried twice',
              );
              return `${o.consumer.retried} handler retries (2 per flaky message), effects of failed attempts rolled back`;
            },
          });
        },
      ),
    );
  }

  it(
    'handler failing permanently, and failing until its attempts run out',
    { timeout: 60_000 },
    () =>
      runScenario(
        {
          ...base,
          name: 'handler failing permanently / attempts exhausted',
          consumer: {
            after: async (_payload, context) => {
              if (context.routingKey === 'ledger.permanent')
                throw new PermanentError('no such account');
              if (context.routingKey === 'ledger.doomed') throw new Error('always fails');
            },
          },
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          await sc.traffic({
            total: 500,
            message: (i): Partial<BusinessMessage> => {
              if (i % 10 === 6) return { fate: 'dead-letter', routingKey: 'ledger.permanent' };
              if (i % 25 === 9) return { fate: 'dead-letter', routingKey: 'ledger.doomed' };
              return {};
            },
          }).done;
          await sc.finish({
            evidence: (o) => {
              const reasons = byReason(o.deadLetters.values());
              assert.equal(reasons.get('permanent-error'), 50);
              assert.equal(reasons.get('retries-exhausted'), 20);
              return `${reasons.get('permanent-error')} dead-lettered at once, ${reasons.get('retries-exhausted')} after 5 attempts; their effects rolled back`;
            },
          });
        },
      ),
  );

  it(
    'overlapping duplicates: the same message three times, 5-50 ms apart',
    { timeout: 60_000 },
    () => {
      // When each copy was picked up, and when the handler of each message ran: a copy picked up
      // before the handler's transaction ended overlapped it, and had to wait on its dedupe row.
      const arrivals = new Map<string, number[]>();
      const running = new Map<string, { start: number; end: number }>();
      return runScenario(
        {
          ...base,
          name: 'overlapping duplicates (3 copies, 5-50 ms apart)',
          // Unordered and wide, so that copies of one message are handled side by side.
          ordered: false,
          consumer: {
            onDelivery: (_payload, info) => {
              const id = info.messageId ?? '';
              arrivals.set(id, [...(arrivals.get(id) ?? []), Date.now()]);
            },
            before: async (payload) => {
              running.set(payload.msgId, { start: Date.now(), end: Number.POSITIVE_INFINITY });
              await sleep(30);
            },
            after: async (payload) => {
              running.get(payload.msgId)!.end = Date.now();
            },
            definition: { concurrency: 8 },
          },
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          // Each message committed, then written again twice, 5-50 ms apart: a business retrying
          // an operation it could not tell had committed.
          const jitter = () => sleep(5 + Math.floor(Math.random() * 45));
          // Five writers of 20 messages each: few enough that no write waits for a connection,
          // which would spread the copies of a message apart.
          await Promise.all(
            Array.from({ length: 5 }, async (_, w) => {
              for (let i = w; i < 100; i += 5) {
                const ids = await sc.commit([{ key: `k${i}` }]);
                await jitter();
                await sc.reemit(ids);
                await jitter();
                await sc.reemit(ids);
              }
            }),
          );
          await sc.finish({
            evidence: (o) => {
              let overlapping = 0;
              for (const [id, times] of arrivals) {
                const run = running.get(id);
                if (run && times.filter((t) => t <= run.end).length > 1) overlapping += 1;
              }
              assert.equal(o.duplicatesDelivered, 200, 'not every copy was delivered');
              assert.equal(o.duplicatesAbsorbed, 200, 'not every copy was absorbed');
              assert.ok(
                overlapping > 0,
                'no copy was ever picked up while its twin was being handled',
              );
              return `200 extra copies, all absorbed; ${overlapping} messages had copies in flight at once`;
            },
          });
        },
      );
    },
  );

  it('a handler slower than its time limit', { timeout: 60_000 }, () =>
    runScenario(
      {
        ...base,
        name: 'handler slower than its time limit (400 ms)',
        consumer: {
          definition: { timeoutMs: 400 },
          // On its first attempt a slow message either ignores its signal in JavaScript or
          // sits in a statement, after writing its effect; the retry is quick.
          after: async (payload, context) => {
            if (context.routingKey !== 'ledger.slow' || context.attempt > 1) return;
            if (payload.version % 2 === 0) await sleep(1200);
            else await sql`SELECT pg_sleep(5)`.execute(context.trx);
          },
        },
      },
      async (sc) => {
        await sc.startConsumer();
        await sc.startRelay();
        await sc.traffic({
          total: 300,
          message: (i) => (i % 15 === 2 ? { routingKey: 'ledger.slow' } : {}),
        }).done;
        await sc.finish({
          evidence: (o) => {
            assert.equal(o.consumer.timeouts, 20, 'not every slow attempt timed out');
            return `${o.consumer.timeouts} attempts timed out (JS sleep and pg_sleep), rolled back and retried`;
          },
        });
      },
    ),
  );

  it(
    'a handler whose own dependency refuses connections (ECONNREFUSED): attempts, retries, dead letters',
    { timeout: 60_000 },
    () => {
      // What an HTTP or Redis client throws while its server is down: the code Postgres' own
      // connection errors have too, but thrown by the handler's code, not by its transaction.
      const refused = () =>
        Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
      return runScenario(
        {
          ...base,
          name: 'handler dependency down (ECONNREFUSED)',
          ordered: false,
          consumer: {
            // After the effect is written, so a commit that should not happen would show.
            after: async (_payload, context) => {
              if (context.routingKey === 'ledger.flaky-dependency' && context.attempt <= 2)
                throw refused();
              if (context.routingKey === 'ledger.dependency-gone') throw refused();
            },
          },
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          let flaky = 0;
          let gone = 0;
          await sc.traffic({
            total: 300,
            message: (i): Partial<BusinessMessage> => {
              if (i % 10 === 3) {
                flaky += 1;
                return { routingKey: 'ledger.flaky-dependency' };
              }
              if (i % 30 === 7) {
                gone += 1;
                return { fate: 'dead-letter', routingKey: 'ledger.dependency-gone' };
              }
              return {};
            },
          }).done;
          await sc.finish({
            evidence: (o) => {
              const reasons = byReason(o.deadLetters.values());
              assert.equal(o.consumer.databaseRetries, 0, 'handler errors taken for an outage');
              assert.equal(reasons.get('retries-exhausted'), gone);
              // Two retries per flaky message, four (attempts 1-4 of 5) per message whose
              // dependency never came back.
              assert.equal(o.consumer.retried, 2 * flaky + 4 * gone);
              return `${flaky} messages retried twice through the delay queues, ${gone} dead-lettered after 5 attempts; 0 taken for a database outage`;
            },
          });
        },
      );
    },
  );

  it(
    'a handler that never settles: its slot and its key are freed at the time-out',
    { timeout: 60_000 },
    () => {
      const timeoutMs = 400;
      // When each stuck message's first attempt began and when its retry began.
      const stuckAt = new Map<string, number>();
      const retriedAt = new Map<string, number>();
      return runScenario(
        {
          ...base,
          name: `handler that never settles (time-out ${timeoutMs} ms)`,
          consumer: {
            definition: { timeoutMs },
            before: async (payload, context) => {
              if (context.routingKey !== 'ledger.stuck') return;
              if (context.attempt > 1) {
                retriedAt.set(payload.msgId, Date.now());
                return;
              }
              stuckAt.set(payload.msgId, Date.now());
              // Ignores its signal and never settles, holding nothing but its own promise.
              await new Promise<void>(() => {});
            },
          },
        },
        async (sc) => {
          await sc.startConsumer();
          await sc.startRelay();
          await sc.traffic({
            total: 300,
            message: (i) => (i % 15 === 4 ? { routingKey: 'ledger.stuck' } : {}),
          }).done;
          await sc.finish({
            evidence: (o) => {
              assert.equal(o.consumer.timeouts, 20, 'not every stuck attempt timed out');
              assert.equal(retriedAt.size, 20, 'a stuck message was never retried');
              let longest = 0;
              for (const [id, at] of stuckAt) longest = Math.max(longest, retriedAt.get(id)! - at);
              // The retry waits for the time-out, the rollback and its retry delay (in place, 50 ms).
              assert.ok(longest < timeoutMs + 1500, `a key stayed blocked for ${longest} ms`);
              return `20 attempts never settled; each timed out, rolled back and its key retried within ${longest} ms (bound ${timeoutMs} ms + rollback)`;
            },
          });
        },
      );
    },
  );

  it(
    'commit-order inversion on one key: the writer lock keeps id order = commit order',
    { timeout: 60_000 },
    () =>
      runScenario({ ...base, name: 'commit-order inversion on one key' }, async (sc) => {
        await sc.startConsumer();
        await sc.startRelay();
        let blocked = 0;
        const rounds = 60;
        // T1 writes its outbox row first and commits last; T2 starts after it. Without the
        // writer's key lock, T2 would bump the key's version first and commit first while T1's
        // row had the lower id: the relay would publish version 2 before version 1.
        const round = async (r: number) => {
          const key = `inv${r % 15}`;
          const [id1, id2] = [`${sc.sid}-inv${r}-1`, `${sc.sid}-inv${r}-2`];
          const t1 = await sc.appPool.connect();
          const t2 = await sc.appPool.connect();
          try {
            await t1.query('BEGIN');
            await sc.writer.add(t1, sc.outboxMessage(id1, { key }, 0));
            await t2.query('BEGIN');
            const pid2 = (await t2.query<{ pid: number }>('SELECT pg_backend_pid() AS pid'))
              .rows[0]!.pid;
            const second = (async () => {
              await sc.writer.add(t2, sc.outboxMessage(id2, { key }, 0));
              await bump(t2, id2, key);
              await t2.query('COMMIT');
            })();
            const sawBlocked = await waitFor(
              'T2 waiting for the key lock',
              async () => {
                const { rows } = await sc.appPool.query(
                  `SELECT 1 FROM pg_locks WHERE pid = $1 AND locktype = 'advisory' AND NOT granted`,
                  [pid2],
                );
                return rows.length > 0;
              },
              300,
              5,
            ).then(
              () => true,
              () => false,
            );
            if (sawBlocked) blocked += 1;
            await bump(t1, id1, key);
            await t1.query('COMMIT');
            await second;
          } finally {
            // After a failure, neither may go back to the pool inside a transaction.
            await t1.query('ROLLBACK').catch(() => {});
            await t2.query('ROLLBACK').catch(() => {});
            t1.release();
            t2.release();
          }
        };
        const bump = async (client: PoolClient, id: string, key: string) => {
          const { rows } = await client.query<{ version: number }>(
            `INSERT INTO ${sc.table('accounts')} (key, version) VALUES ($1, 1)
           ON CONFLICT (key) DO UPDATE SET version = accounts.version + 1 RETURNING version`,
            [key],
          );
          await client.query(
            `INSERT INTO ${sc.table('ledger')} (msg_id, key, version, fate) VALUES ($1, $2, $3, 'effect')`,
            [id, key, rows[0]!.version],
          );
        };
        // Two pairs at a time: four connections, and the pool keeps one for watching the locks.
        for (let r = 0; r < rounds; r += 2) await Promise.all([round(r), round(r + 1)]);
        await sc.finish({
          evidence: () => {
            assert.equal(blocked, rounds, 'the second writer did not always wait for the key lock');
            return `${rounds} inverted pairs; the second writer waited for the key lock every time`;
          },
        });
      }),
  );
});
