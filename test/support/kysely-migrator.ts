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
 * `migrateToLatest`, run again once when it raced another test file: Kysely 0.29's Migrator
 * introspects every schema, and a schema dropped at that moment fails the lookup (3F000) with
 * nothing applied.
 */
export async function migrateToLatest(migrator: MigratorLike): Promise<MigrationResults> {
  const result = await migrator.migrateToLatest();
  const raced = (result.error as { code?: unknown } | undefined)?.code === '3F000';
  return raced ? migrator.migrateToLatest() : result;
}
