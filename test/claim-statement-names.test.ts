import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { Kysely, PostgresDialect, type PostgresPool, sql } from 'kysely';
import pg from 'pg';
import type { ConsumeContext } from '../src/consumer/consumer-definition.js';
import { processedQueries } from '../src/consumer/processed-queries.js';
import { StatementNames, statementNameOf } from '../src/sql/statement-names.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { DATABASE_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { waitFor } from './support/wait-for.js';

describe("the consumer's claim as a named statement", () => {
  let f: ConsumerFixture;
  const pools: pg.Pool[] = [];
  before(async () => {
    f = await ConsumerFixture.open('cnamed');
  });
  afterEach(async () => {
    await f.stopHosts();
    f.assertPoolIdle();
  });
  after(async () => {
    await Promise.all(pools.map((p) => p.end()));
    await f.close();
  });

  /** What Kysely calls on a pooled client. */
  interface ClientCalls {
    query(text: string, parameters: readonly unknown[]): Promise<unknown>;
    release(): void;
  }

  /**
   * A Kysely of its own on a pool of `max` connections (one: every claim shares a session),
   * whose clients Kysely gets through `wrap` when it is given.
   */
  const ownPool = (max: number, wrap?: (client: pg.PoolClient) => Promise<ClientCalls>) => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max });
    pool.on('error', () => {});
    pools.push(pool);
    const wrapped = wrap && {
      connect: async () =>
        (await wrap(await pool.connect())) as unknown as Awaited<
          ReturnType<PostgresPool['connect']>
        >,
      end: () => pool.end(),
      // Kysely 0.29 wants them, for a client that cancels a query.
      options: pool.options,
    };
    // biome-ignore lint/suspicious/noExplicitAny: the test writes to tables of its own
    return new Kysely<any>({ dialect: new PostgresDialect({ pool: wrapped ?? pool }) });
  };

  /** The session's prepared statements that insert dedupe rows: the claim's, when named. */
  // biome-ignore lint/suspicious/noExplicitAny: see ownPool
  const preparedClaims = async (trx: Kysely<any>) => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_prepared_statements
      WHERE NOT from_sql AND statement LIKE '%processed_messages%'`.execute(trx);
    return rows[0]!.n;
  };

  /** A consumer of `key` whose handler notes how many claims its session holds prepared. */
  const countingPreparedClaims = (key: string) => {
    const seen: number[] = [];
    const def = f.definition(
      key,
      async (payload: unknown, ctx: ConsumeContext) => {
        seen.push(await preparedClaims(ctx.trx));
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: [key] },
    );
    return { seen, def };
  };

  it('is prepared once per connection and used by every claim after', async () => {
    const { seen, def } = countingPreparedClaims('named');
    const host = await f.host([def], { db: ownPool(1) });
    await f.publishMany(
      Array.from({ length: 10 }, (_, i) => ({
        routingKey: 'named',
        content: { i },
        options: { messageId: `named-${i}` },
      })),
    );
    await waitFor('ten handled', () => host.stats(def.name).handled === 10);
    assert.deepEqual(seen, Array(10).fill(1));
    assert.equal((await f.effects()).filter((e) => e.consumer === def.name).length, 10);
  });

  it('goes unnamed once Postgres lost it, without counting an attempt or losing a message', async () => {
    const logger = recordingLogger();
    let dropped = false;
    const def = f.definition(
      'dropped',
      async (payload: unknown, ctx: ConsumeContext) => {
        // Not transactional: the session forgets the claim pg believes prepared, as after a
        // DISCARD ALL or a pooler that moved the session.
        if (!dropped) {
          dropped = true;
          await sql`DEALLOCATE ALL`.execute(ctx.trx);
        }
        await f.recordEffect(payload, ctx);
      },
      { routingKeys: ['dropped'] },
    );
    const host = await f.host([def], { db: ownPool(1), logger });
    for (let i = 0; i < 5; i += 1) {
      await f.publish('dropped', { i }, { messageId: `dropped-${i}` });
      await waitFor(`message ${i} handled`, () => host.stats(def.name).handled === i + 1);
    }
    const effects = (await f.effects()).filter((e) => e.consumer === def.name);
    assert.deepEqual(
      effects.map((e) => [e.key, e.attempt]),
      Array.from({ length: 5 }, (_, i) => [`dropped-${i}`, 1]),
    );
    const stats = host.stats(def.name);
    assert.equal(stats.failures, 0);
    assert.equal(stats.retried, 0);
    const warnings = logger.lines.filter((l) => l.text.includes('sent unnamed from now on'));
    assert.equal(warnings.length, 1, JSON.stringify(logger.lines));
    assert.match(warnings[0]!.text, /does not exist/);
  });

  it('goes unnamed when the session holds its name already, as a pooler in transaction mode can hand over', async () => {
    const logger = recordingLogger();
    const db = ownPool(1);
    const claimName = statementNameOf(processedQueries(f.t.schema).claimOne);
    await sql`${sql.raw(`PREPARE "${claimName}" AS SELECT 1`)}`.execute(db);
    const def = f.definition('taken', f.recordEffect, { routingKeys: ['taken'] });
    const host = await f.host([def], { db, logger });
    for (let i = 0; i < 3; i += 1) {
      await f.publish('taken', { i }, { messageId: `taken-${i}` });
    }
    await waitFor('three handled', () => host.stats(def.name).handled === 3);
    const effects = (await f.effects()).filter((e) => e.consumer === def.name);
    assert.deepEqual(
      effects.map((e) => e.attempt),
      [1, 1, 1],
    );
    assert.equal(host.stats(def.name).failures, 0);
    const warnings = logger.lines.filter((l) => l.text.includes('sent unnamed from now on'));
    assert.equal(warnings.length, 1, JSON.stringify(logger.lines));
    assert.match(warnings[0]!.text, /already exists/);
  });

  it('goes unnamed also for the claims in flight when one failed, none counting an attempt', async () => {
    // Every connection forgets its prepared statements when it goes back to the pool, so a claim
    // sent by name on a connection used before fails. Once four claims went by name, the next
    // four transactions are held until all four wait, and then claim at once, each by name on a
    // connection that forgot it.
    let namedClaims = 0;
    let released = false;
    const held: Array<() => void> = [];
    const forgetful = async (client: pg.PoolClient): Promise<ClientCalls> => {
      if (namedClaims >= 4 && !released) {
        await new Promise<void>((resolve) => {
          held.push(resolve);
          if (held.length === 4) {
            released = true;
            for (const go of held) go();
          }
        });
      }
      return {
        query: (text, parameters) => {
          if (typeof text === 'object' && /processed_messages/.test(String(text))) {
            namedClaims += 1;
          }
          return client.query(text, [...parameters]);
        },
        release: () => {
          void client.query('DEALLOCATE ALL').then(
            () => client.release(),
            (error: Error) => client.release(error),
          );
        },
      };
    };
    const logger = recordingLogger();
    const def = f.definition('in-flight', f.recordEffect, {
      routingKeys: ['in-flight'],
      concurrency: 4,
    });
    const host = await f.host([def], { db: ownPool(4, forgetful), logger });
    await f.publishMany(
      Array.from({ length: 12 }, (_, i) => ({
        routingKey: 'in-flight',
        content: { i },
        options: { messageId: `in-flight-${i}` },
      })),
    );
    await waitFor('twelve handled', () => host.stats(def.name).handled === 12);
    const effects = (await f.effects()).filter((e) => e.consumer === def.name);
    assert.equal(effects.length, 12);
    assert.deepEqual(new Set(effects.map((e) => e.attempt)), new Set([1]));
    assert.equal(host.stats(def.name).failures, 0);
    const warnings = logger.lines.filter((l) => l.text.includes('sent unnamed from now on'));
    assert.equal(warnings.length, 1, JSON.stringify(logger.lines));
  });

  it('stays unnamed with a driver that sends only the text', async () => {
    const claimsSentAs: string[] = [];
    const textOnly = async (client: pg.PoolClient): Promise<ClientCalls> => ({
      query: (text, parameters) => {
        if (/^INSERT INTO .*processed_messages/s.test(String(text))) claimsSentAs.push(typeof text);
        return client.query(String(text), [...parameters]);
      },
      release: () => client.release(),
    });
    const { seen, def } = countingPreparedClaims('text-only');
    const host = await f.host([def], { db: ownPool(1, textOnly) });
    for (let i = 0; i < 3; i += 1) {
      await f.publish('text-only', { i }, { messageId: `text-only-${i}` });
    }
    await waitFor('three handled', () => host.stats(def.name).handled === 3);
    assert.deepEqual(seen, [0, 0, 0]);
    // The probe found the name did not reach Postgres: the claims went as plain text.
    assert.deepEqual(claimsSentAs, ['string', 'string', 'string']);
  });

  it('reads as its text to anything but pg', async () => {
    const names = new StatementNames();
    const text = 'SELECT $1::int AS n';
    assert.equal(names.sql(text, [7]), text, 'off until a probe found names work');
    assert.equal(await names.probe(f.t.db, recordingLogger()), true);
    const named = names.sql(text, [7]);
    assert.notEqual(named, text);
    assert.equal(`${named}`, text);
    assert.equal(String(named), text);
    assert.equal(JSON.stringify({ sql: named }), JSON.stringify({ sql: text }));
    assert.equal(inspect(named), text);
    assert.equal(named.length, text.length);
    assert.equal(named.replace('$1', '$2'), 'SELECT $2::int AS n');
    assert.equal(named.startsWith('SELECT'), true);
    const { rows } = await f.t.pool.query<{ n: number }>(named as unknown as pg.QueryConfig, [7]);
    assert.deepEqual(rows, [{ n: 7 }]);
    assert.equal(names.turnOff(), true);
    assert.equal(names.turnOff(), false);
    assert.equal(names.sql(text, [7]), text);
    assert.equal(await names.probe(f.t.db, recordingLogger()), false, 'off for good');
  });
});
