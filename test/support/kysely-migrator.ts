import * as kysely from 'kysely';
import type { KyselyMigration } from '../../src/migrate/kysely-migration-provider.js';

interface MigrationResults {
  error?: unknown;
  results?: { status: string; migrationName: string }[];
}

export interface MigratorLike {
  migrateToLatest(): Promise<MigrationResults>;
}

type MigratorClass = new (options: {
  db: unknown;
  provider: { getMigrations(): Promise<Record<string, KyselyMigration>> };
  migrationTableSchema?: string;
}) => MigratorLike;

/** Kysely 0.28 exports `Migrator` from `kysely`; 0.29 from `kysely/migration`. */
export async function kyselyMigrator(): Promise<MigratorClass> {
  const root = kysely as unknown as { Migrator?: MigratorClass };
  if (root.Migrator) return root.Migrator;
  const path = 'kysely/migration';
  return ((await import(path)) as { Migrator: MigratorClass }).Migrator;
}

/**
 * `migrateToLatest`, run again (up to three times in all) when it raced another test file:
 * Kysely 0.29's Migrator introspects every schema, and a schema dropped at that moment fails the
 * lookup (3F000) with nothing applied.
 */
export async function migrateToLatest(migrator: MigratorLike): Promise<MigrationResults> {
  let result = await migrator.migrateToLatest();
  for (let again = 0; again < 2 && raced(result); again += 1) {
    result = await migrator.migrateToLatest();
  }
  return result;
}

function raced(result: MigrationResults): boolean {
  return (result.error as { code?: unknown } | undefined)?.code === '3F000';
}
