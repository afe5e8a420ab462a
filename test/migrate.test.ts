import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxMigrationProvider } from '../src/migrate/kysely-migration-provider.js';
import { migrate } from '../src/migrate/migrate.js';
import { loadMigrations } from '../src/migrate/migration-files.js';
import { kyselyMigrator, migrateToLatest } from './support/kysely-migrator.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';

describe('migrations', () => {
  let t: TestDatabase;
  before(async () => {
    t = await testDatabase('mig', { migrate: false });
  });
  after(() => t.close());

  it('applies every migration once; a second run is a no-op', async () => {
    const all = (await loadMigrations()).map((m) => m.version);
    assert.deepEqual((await migrate(t.pool, { schema: t.schema })).applied, all);
    assert.deepEqual((await migrate(t.pool, { schema: t.schema })).applied, []);
    assert.equal(await t.count('outbox'), 0);
    assert.equal(await t.count('outbox_parked'), 0);
    assert.equal(await t.count('processed_messages'), 0);
    // The writer wakes relays itself (0004): no trigger may serialise the outbox's commits.
    const triggers = await t.pool.query(
      `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`,
      [`"${t.schema}".outbox`],
    );
    assert.deepEqual(triggers.rows, []);
  });

  it('lets only one of two concurrent migrators apply', async () => {
    const schema = uniqueName('mig_race');
    try {
      const results = await Promise.all([
        migrate(t.pool, { schema }),
        migrate(t.pool, { schema }),
        migrate(t.pool, { schema }),
      ]);
      const appliedCounts = results.map((r) => r.applied.length).sort();
      const total = (await loadMigrations()).length;
      assert.deepEqual(appliedCounts, [0, 0, total]);
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('escapes the schema name everywhere', async () => {
    const schema = `we"ird ${uniqueName('x')}`;
    try {
      await migrate(t.pool, { schema });
      const { rows } = await t.pool.query(
        'SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1',
        [schema],
      );
      assert.equal(rows[0].n, 4);
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema.replaceAll('"', '""')}" CASCADE`);
    }
  });

  it('rejects a schema name Postgres cannot hold, naming the option', async () => {
    await assert.rejects(migrate(t.pool, { schema: 'x'.repeat(60) }), (error: unknown) => {
      assert.ok(error instanceof ConfigurationError);
      assert.equal(error.option, 'schema');
      return true;
    });
  });

  it('runs under an application Kysely Migrator through the provider', async () => {
    const schema = uniqueName('mig_kysely');
    try {
      const migrator = new (await kyselyMigrator())({
        db: t.db,
        provider: new OutboxMigrationProvider({ schema }),
        // Its own bookkeeping tables: other test files run Migrators on this database too.
        migrationTableSchema: schema,
      });
      const first = await migrateToLatest(migrator);
      assert.equal(first.error, undefined);
      assert.equal(first.results?.length, (await loadMigrations()).length);
      assert.ok(
        first.results?.every(
          (r) => r.status === 'Success' && r.migrationName.startsWith('outboxkit_'),
        ),
      );
      const second = await migrateToLatest(migrator);
      assert.equal(second.error, undefined);
      assert.deepEqual(second.results, []);
      await t.pool.query(`SELECT 1 FROM "${schema}".outbox`);
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
