import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CompiledQuery, type Transaction } from 'kysely';
import pg from 'pg';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { OutboxRuntime } from '../src/nestjs/outbox-runtime.js';
import { resolveModuleOptions } from '../src/nestjs/resolve-module-options.js';
import { joinedTransaction } from '../src/orm/joined-transaction.js';
import { silentLogger } from '../src/util/logger.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { DATABASE_URL } from './support/env.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/** The writer's statements this session holds prepared, by their text's table. */
async function preparedInSession(
  query: (text: string) => Promise<{ rows: unknown[] }>,
  outbox: string,
): Promise<number> {
  const { rows } = await query(
    `SELECT count(*)::int AS n FROM pg_prepared_statements
     WHERE NOT from_sql AND name LIKE 'outboxkit\\_%' AND position('${outbox}' in statement) > 0`,
  );
  return (rows[0] as { n: number }).n;
}

describe('OutboxWriter preparedStatements', () => {
  let t: TestDatabase;
  let outbox: string;
  const message = { exchange: 'orders', routingKey: 'order.placed', payload: { id: 1 } };

  before(async () => {
    t = await testDatabase('writer_prepared');
    outbox = `"${t.schema}".outbox`;
  });
  after(() => t.close());

  /**
   * A session of its own, so that no other test's prepared statements are in it, and none of
   * its own are left to another test.
   */
  async function freshClient(): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: DATABASE_URL });
    client.on('error', () => {});
    await client.connect();
    return client;
  }

  /** Runs `work` in a transaction on a session of its own. */
  async function onClient<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await freshClient();
    try {
      await client.query('BEGIN');
      const result = await work(client);
      await client.query('COMMIT');
      return result;
    } finally {
      await client.end();
    }
  }

  it('sends the INSERT by name on a Kysely transaction, for one message and many', async () => {
    const writer = new OutboxWriter({ schema: t.schema, preparedStatements: true });
    const before = await t.count('outbox');
    const prepared = await t.db.transaction().execute(async (trx: Transaction<unknown>) => {
      const inSession = () =>
        preparedInSession((text) => trx.executeQuery(CompiledQuery.raw(text)), outbox);
      const was = await inSession();
      await writer.add(trx, message);
      await writer.addMany(trx, [message, { ...message, orderingKey: 'k' }]);
      return (await inSession()) - was;
    });
    assert.equal(prepared, 2, 'one statement for one message, one for many');
    assert.equal(await t.count('outbox'), before + 3);
  });

  it('sends it by name on a pg client, and not at all by default', async () => {
    const named = new OutboxWriter({ schema: t.schema, preparedStatements: true });
    const unnamed = new OutboxWriter({ schema: t.schema });
    const [withOption, without] = await Promise.all([
      onClient(async (client) => {
        await named.add(client, message);
        return preparedInSession((text) => client.query(text), outbox);
      }),
      onClient(async (client) => {
        await unnamed.add(client, message);
        return preparedInSession((text) => client.query(text), outbox);
      }),
    ]);
    assert.equal(withOption, 1);
    assert.equal(without, 0);
  });

  it("hands an ORM adapter's transaction the text as a string", async () => {
    const writer = new OutboxWriter({ schema: t.schema, preparedStatements: true });
    const seen: string[] = [];
    await onClient(async (client) => {
      const handle = joinedTransaction(
        async (text, params) => {
          seen.push(typeof text);
          return client.query(text, params);
        },
        () => true,
        'pass the transaction',
      );
      await writer.add(handle, message);
    });
    assert.deepEqual(seen, ['string']);
  });

  it("is off unless the Nest module turns it on, and reaches the module's writer", async () => {
    const options = (extra: object) =>
      resolveModuleOptions(
        {
          db: t.db,
          amqpUrl: 'amqp://localhost',
          schema: t.schema,
          relay: false,
          consumers: false,
          ...extra,
        },
        silentLogger,
      );
    assert.equal(options({}).preparedStatements, false);
    const runtime = new OutboxRuntime(options({ preparedStatements: true }));
    const prepared = await onClient(async (client) => {
      await runtime.writer.add(client, message);
      return preparedInSession((text) => client.query(text), outbox);
    });
    assert.equal(prepared, 1);
  });

  it('fails a write whose session lost the statement with prepared-statement-lost, then goes unnamed', async () => {
    // No NOTIFY: one statement for every write of the test.
    const writer = new OutboxWriter({
      schema: t.schema,
      preparedStatements: true,
      notifyIntervalMs: false,
    });
    await t.pool.query(`CREATE TABLE IF NOT EXISTS "${t.schema}".orders (id int PRIMARY KEY)`);
    const client = await freshClient();
    try {
      await client.query('BEGIN');
      await writer.add(client, message);
      await client.query('COMMIT');
      // What a pooler that moves sessions, or DISCARD ALL, does: pg still believes it prepared.
      await client.query('DEALLOCATE ALL');
      const rowsBefore = await t.count('outbox');
      await client.query('BEGIN');
      await client.query(`INSERT INTO "${t.schema}".orders (id) VALUES (1)`);
      const error = await writer.add(client, message).then(
        () => assert.fail('the write succeeded'),
        (e: unknown) => e,
      );
      await client.query('ROLLBACK');
      assert.ok(error instanceof OutboxkitError, `not an OutboxkitError: ${String(error)}`);
      assert.equal(error.code, 'prepared-statement-lost');
      assert.match(error.message, /preparedStatements: false/);
      assert.equal((error.cause as { code?: string }).code, '26000');
      // Nothing of the failed transaction committed: neither the business row nor a message.
      assert.equal(await t.count('orders'), 0);
      assert.equal(await t.count('outbox'), rowsBefore);

      // The same session, unnamed from now on, by this writer and one made later (the client
      // still believes it prepared the statement): the writes go through.
      const later = new OutboxWriter({
        schema: t.schema,
        preparedStatements: true,
        notifyIntervalMs: false,
      });
      await client.query('BEGIN');
      await writer.add(client, message);
      await later.add(client, message);
      await client.query('COMMIT');
      assert.equal(await t.count('outbox'), rowsBefore + 2);
      assert.equal(await preparedInSession((text) => client.query(text), outbox), 0);
    } finally {
      await client.end();
    }
  });
});
