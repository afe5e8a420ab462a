import { type Kysely, sql } from 'kysely';
import { ConfigurationError } from '../errors/configuration-error.js';
import { optionNames } from '../options/option-names.js';
import { optionsObject } from '../options/options-object.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { loadMigrations, versionTableSql } from './migration-files.js';
import { migrationLockTimeout } from './migration-lock-timeout.js';

/**
 * The shape of Kysely's `Migration` and `MigrationProvider`, declared here because Kysely moved
 * them from `kysely` to `kysely/migration` in 0.29; a structural type fits both versions.
 */
export interface KyselyMigration {
  // biome-ignore lint/suspicious/noExplicitAny: Kysely's own migrations take a Kysely<any>
  up(db: Kysely<any>): Promise<void>;
}

/** What Kysely's `Migrator` takes as its `provider`. */
export interface KyselyMigrationProvider {
  getMigrations(): Promise<Record<string, KyselyMigration>>;
}

export interface OutboxMigrationProviderOptions {
  /** Schema of the outboxkit tables. Default `outboxkit`. */
  readonly schema?: string | undefined;
  /**
   * Put before each migration's name (`<prefix>0001_outbox`). Default `outboxkit_`, which sorts
   * after names that start with a digit. In a Migrator shared with the application's own
   * migrations, give a prefix that sorts before them, such as `0000_outboxkit_`: Kysely refuses
   * a new migration whose name sorts before one already run. Never change it once migrations
   * ran: Kysely would find them missing.
   */
  readonly prefix?: string | undefined;
}

/** Every option of `OutboxMigrationProviderOptions`. */
export const MIGRATION_PROVIDER_OPTION_NAMES = optionNames<OutboxMigrationProviderOptions>()([
  'schema',
  'prefix',
]);

/**
 * outboxkit's migrations for an application's own Kysely `Migrator`. Each also records its
 * version in outboxkit's version table, which the relay and consumers check at start. Kysely's
 * migrator brings its own lock. To run them in one Migrator with the application's migrations,
 * combine the providers (`combineMigrationProviders`) and give a `prefix` that sorts first; see
 * "Migrating with Kysely" in docs/operations.md.
 *
 * @example
 * const migrator = new Migrator({ db, provider: new OutboxMigrationProvider({ schema: 'outboxkit' }) });
 * await migrator.migrateToLatest();
 */
export class OutboxMigrationProvider implements KyselyMigrationProvider {
  readonly #schema: string | undefined;
  readonly #prefix: string;

  constructor(options?: OutboxMigrationProviderOptions) {
    const { schema, prefix } = optionsObject(
      'options',
      options,
      MIGRATION_PROVIDER_OPTION_NAMES,
      'OutboxMigrationProvider',
    );
    if (prefix !== undefined && typeof prefix !== 'string') {
      throw new ConfigurationError('prefix', `must be a string, got ${String(prefix)}`);
    }
    this.#schema = schema;
    this.#prefix = prefix ?? 'outboxkit_';
    outboxTables(schema);
  }

  async getMigrations(): Promise<Record<string, KyselyMigration>> {
    const migrations = await loadMigrations(this.#schema);
    const { migrations: versions, schemaName } = outboxTables(this.#schema);
    const versionTable = versionTableSql(this.#schema);
    return Object.fromEntries(
      migrations.map((m) => [
        `${this.#prefix}${String(m.version).padStart(4, '0')}_${m.name}`,
        {
          async up(db: Kysely<unknown>) {
            await sql
              .raw(m.sql)
              .execute(db)
              .catch((error: unknown) => {
                throw migrationLockTimeout(error, m, schemaName) ?? error;
              });
            await sql.raw(versionTable).execute(db);
            await sql`INSERT INTO ${sql.raw(versions)} (version, name) VALUES (${m.version}, ${m.name}) ON CONFLICT DO NOTHING`.execute(
              db,
            );
          },
        },
      ]),
    );
  }
}
