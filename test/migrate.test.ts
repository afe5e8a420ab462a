import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxkitError } from '../src/errors/outboxkit-error.js';
import { OutboxMigrationProvider } from '../src/migrate/kysely-migration-provider.js';
import { migrate } from '../src/migrate/migrate.js';
import { loadMigrations, SHIPPED_VERSIONS } from '../src/migrate/migration-files.js';
import { DATABASE_URL } from './support/env.js';
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
    // The start checks go by this list, not by the folder, which a bundle may lack.
    assert.deepEqual(SHIPPED_VERSIONS, all);
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

  // `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the database even when the schema is there:
  // a migration role that owns a schema a DBA made for it could not migrate.
  it('migrates as the owner of a schema it may not create, and names a role that may not', async () => {
    const owner = uniqueName('okmig_owner');
    const other = uniqueName('okmig_other');
    const schema = uniqueName('owned');
    await t.pool.query(`CREATE ROLE ${owner} LOGIN; CREATE ROLE ${other} LOGIN;
      CREATE SCHEMA ${schema} AUTHORIZATION ${owner}`);
    const poolOf = (role: string) => {
      const url = new URL(DATABASE_URL);
      url.username = role;
      url.password = '';
      return new pg.Pool({ connectionString: url.toString(), max: 1 });
    };
    const ownerPool = poolOf(owner);
    const otherPool = poolOf(other);
    try {
      const all = (await loadMigrations()).map((m) => m.version);
      assert.deepEqual((await migrate(ownerPool, { schema })).applied, all);
      assert.deepEqual((await migrate(ownerPool, { schema })).applied, []);
      await assert.rejects(migrate(otherPool, { schema }), (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'migration-privilege-missing');
        assert.ok(error.message.includes(`the role "${other}" may not`), error.message);
        return true;
      });
    } finally {
      await ownerPool.end();
      await otherPool.end();
      await t.pool.query(`DROP SCHEMA ${schema} CASCADE; DROP ROLE ${owner}; DROP ROLE ${other}`);
    }
  });

  // Such a schema has no version table: migrate() applied 0001 again, "relation already exists".
  it('migrates a schema made from the SQL files, recording what they made', async () => {
    const schema = uniqueName('fromsql');
    const migrations = await loadMigrations(schema);
    const client = await t.pool.connect();
    try {
      for (const m of migrations.filter((m) => m.version <= 4)) {
        await client.query('BEGIN');
        await client.query(m.sql);
        await client.query('COMMIT');
      }
    } finally {
      client.release();
    }
    try {
      assert.deepEqual((await migrate(t.pool, { schema })).applied, [5]);
      assert.deepEqual((await migrate(t.pool, { schema })).applied, []);
      const { rows } = await t.pool.query(
        `SELECT version FROM "${schema}".outboxkit_migrations ORDER BY version`,
      );
      assert.deepEqual(
        rows.map((r: { version: number }) => r.version),
        migrations.map((m) => m.version),
      );
    } finally {
      await t.pool.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
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

  it("keeps its 5 s lock bound to itself: a later migration of the same Migrator run gets the caller's lock_timeout", async () => {
    // 0004's and 0005's `SET LOCAL lock_timeout` held for the rest of the Migrator's one
    // transaction: an application migration after them failed after 5 s (found by a probe).
    const schema = uniqueName('mig_bound');
    let seen: string | undefined;
    try {
      const outboxkit = await new OutboxMigrationProvider({ schema }).getMigrations();
      const migrator = new (await kyselyMigrator())({
        db: t.db,
        provider: {
          getMigrations: async () => ({
            ...outboxkit,
            zz_app_after: {
              async up(db) {
                const { rows } = await sql<{
                  v: string;
                }>`SELECT current_setting('lock_timeout') AS v`.execute(db);
                seen = rows[0]?.v;
              },
            },
          }),
        },
        migrationTableSchema: schema,
      });
      const result = await migrateToLatest(migrator);
      assert.equal(result.error, undefined);
      const { rows } = await t.pool.query(`SELECT current_setting('lock_timeout') AS v`);
      assert.equal(seen, rows[0].v, 'the session default, not 5s');
    } finally {
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });

  it('a migration that cannot take its lock fails with migration-lock-timeout, saying what holds it', async () => {
    const schema = uniqueName('mig_lock');
    const holder = await t.pool.connect();
    try {
      await migrate(t.pool, { schema });
      // Back to version 4, as a 0.2 schema before 0005.
      await t.pool.query(`ALTER TABLE "${schema}".outbox DROP COLUMN rejections`);
      await t.pool.query(`DELETE FROM "${schema}".outboxkit_migrations WHERE version = 5`);
      // A transaction on the outbox, as a relay's claim waiting for slow confirms.
      await holder.query('BEGIN');
      await holder.query(`SELECT count(*) FROM "${schema}".outbox`);
      await assert.rejects(migrate(t.pool, { schema }), (error: unknown) => {
        assert.ok(error instanceof OutboxkitError, String(error));
        assert.equal(error.code, 'migration-lock-timeout');
        assert.match(
          error.message,
          /migration 5 \(outbox_rejections\).*run the migration again, or stop the relays/,
        );
        return true;
      });
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      holder.release();
      await t.pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
});
