import { type Kysely, sql } from 'kysely';
import { loadMigrations } from './migration-files.js';

/**
 * The shape of Kysely's `Migration` and `MigrationProvider`, declared here because Kysely moved
 * them from `kysely` to `kysely/migration` in 0.29; a structural type fits both versions.
 */
export interface KyselyMigration {
  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own migrations take a Kysely<any>
  up(db: Kysely<any>): Promise<void>;
}

/**
 * outboxkit's migrations for an application's own Kysely `Migrator`, named `outboxkit_0001_…`
 * so they sort apart from the application's. Kysely's migrator brings its own lock.
 *
 * @example
 * const migrator = new Migrator({ db, provider: new OutboxMigrationProvider({ schema: 'outboxkit' }) });
 * await migrator.migrateToLatest();
 */
export class OutboxMigrationProvider {
  readonly #schema: string | undefined;

  constructor(options: { schema?: string } = {}) {
    this.#schema = options.schema;
  }

  async getMigrations(): Promise<Record<string, KyselyMigration>> {
    const migrations = await loadMigrations(this.#schema);
    return Object.fromEntries(
      migrations.map((m) => [
        `outboxkit_${String(m.version).padStart(4, '0')}_${m.name}`,
        {
          async up(db: Kysely<unknown>) {
            await sql.raw(m.sql).execute(db);
          },
        },
      ]),
    );
  }
}
