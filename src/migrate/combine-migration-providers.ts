import { ConfigurationError } from '../errors/configuration-error.js';
import type { KyselyMigration, KyselyMigrationProvider } from './kysely-migration-provider.js';

/**
 * One Kysely `MigrationProvider` from several, for a Migrator that runs outboxkit's migrations
 * and the application's together. Kysely runs them in the order of their names; two
 * migrations of one name are refused rather than one silently replacing the other.
 *
 * @example
 * const provider = combineMigrationProviders(
 *   new OutboxMigrationProvider({ schema: 'outboxkit', prefix: '0000_outboxkit_' }),
 *   new FileMigrationProvider({ fs, path, migrationFolder }),
 * );
 * await new Migrator({ db, provider }).migrateToLatest();
 */
export function combineMigrationProviders(
  ...providers: readonly KyselyMigrationProvider[]
): KyselyMigrationProvider {
  // Checked here, not at getMigrations(): a Migrator would report it as a failed migration.
  providers.forEach((provider, i) => {
    const p = provider as { getMigrations?: unknown } | null;
    if (p === null || typeof p !== 'object' || typeof p.getMigrations !== 'function') {
      throw new ConfigurationError(
        `providers[${i}]`,
        'must be a Kysely MigrationProvider (an object with getMigrations()), such as new OutboxMigrationProvider()',
      );
    }
  });
  return {
    async getMigrations() {
      const all: Record<string, KyselyMigration> = {};
      for (const provider of providers) {
        for (const [name, migration] of Object.entries(await provider.getMigrations())) {
          if (Object.hasOwn(all, name)) {
            throw new ConfigurationError('providers', `two migrations are named "${name}"`);
          }
          all[name] = migration;
        }
      }
      return all;
    },
  };
}
