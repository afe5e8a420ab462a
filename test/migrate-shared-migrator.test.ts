import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { combineMigrationProviders } from '../src/migrate/combine-migration-providers.js';
import {
  type KyselyMigration,
  OutboxMigrationProvider,
} from '../src/migrate/kysely-migration-provider.js';
import { loadMigrations } from '../src/migrate/migration-files.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { kyselyMigrator, migrateToLatest } from './support/kysely-migrator.js';
import { type TestDatabase, testDatabase, uniqueName } from './support/test-database.js';

describe("one Kysely Migrator for outboxkit's migrations and the application's", () => {
  let t: TestDatabase;
  let outboxSchema: string;
  let appSchema: string;
  before(async () => {
    t = await testDatabase('mig_shared', { migrate: false });
    outboxSchema = uniqueName('mig_shared_outbox');
    appSchema = uniqueName('mig_shared_app');
  });
  after(async () => {
    await t.pool.query(`DROP SCHEMA IF EXISTS "${outboxSchema}" CASCADE`);
    await t.pool.query(`DROP SCHEMA IF EXISTS "${appSchema}" CASCADE`);
    await t.close();
  });

  /** The application's migrations, named as Kysely's docs name them: by date. */
  const appMigration = (table: string): KyselyMigration => ({
    async up(db) {
      await sql`CREATE TABLE ${sql.id(appSchema, table)} (id int PRIMARY KEY)`.execute(db);
    },
  });

  async function migrateWith(appMigrations: Record<string, KyselyMigration>) {
    const Migrator = await kyselyMigrator();
    const migrator = new Migrator({
      db: t.db,
      // The migration tables in a schema of this test, apart from other tests' Migrators.
      migrationTableSchema: appSchema,
      provider: combineMigrationProviders(
        new OutboxMigrationProvider({ schema: outboxSchema, prefix: '0000_outboxkit_' }),
        { getMigrations: async () => appMigrations },
      ),
    });
    const result = await migrateToLatest(migrator);
    if (result.error) throw result.error;
    return (result.results ?? []).map((r) => r.migrationName);
  }

  it('runs both, is a no-op the second time, and takes a later app migration', async () => {
    await t.pool.query(`CREATE SCHEMA IF NOT EXISTS "${appSchema}"`);
    const first = { '2026_01_10_orders': appMigration('orders') };
    const outboxNames = (await loadMigrations()).map(
      (m) => `0000_outboxkit_${String(m.version).padStart(4, '0')}_${m.name}`,
    );
    assert.deepEqual(await migrateWith(first), [...outboxNames, '2026_01_10_orders']);
    assert.deepEqual(await migrateWith(first), []);

    const second = { ...first, '2026_02_01_invoices': appMigration('invoices') };
    assert.deepEqual(await migrateWith(second), ['2026_02_01_invoices']);
    await t.pool.query(`SELECT 1 FROM "${appSchema}".invoices`);

    // The provider recorded the versions: a relay on this schema passes its start check.
    const relay = new OutboxRelay({
      pool: t.pool,
      amqpUrl: AMQP_URL,
      schema: outboxSchema,
      logger: silentLogger,
    });
    await relay.start();
    await relay.stop();
  });
});
