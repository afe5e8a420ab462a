import { type Migration as KyselyMigration, type MigrationProvider, sql } from 'kysely';
import { loadMigrations } from './migration-files.js';

/**
 * outboxkit's migrations for an application's own Kysely `Migrator`, named `outboxkit_0001_…`
 * so they sort apart from the application's. Kysely's migrator brings its own lock.
 *
 * @example
 * const migrator = new Migrator({ db, provider: new OutboxMigrationProvider({ schema: 'outboxkit' }) });
 * await migrator.migrateToLatest();
 */
export class OutboxMigrationProvider implements MigrationProvider {
  readonly #schema: string | undefined;

  constructor(options: { schema?: string } = {}) {
    this.#schema = options.schema;
  }

  async getMigrations(): Promise<Record<string, KyselyMigration>> {
    const migrations = await loadMigrations(this.#schema);
    return Object.fromEntries(
      migrations.map((m) => [
        `outboxkit_${String(m.version).padStart(4, '0')}_${m.name}`,
        { up: async (db) => void (await sql.raw(m.sql).execute(db)) },
      ]),
    );
  }
}
