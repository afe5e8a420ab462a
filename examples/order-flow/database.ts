import { Global, Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import { type Generated, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { EXAMPLE_CONFIG, type ExampleConfig } from './example-config.js';

/** The example's tables, for Kysely's types. */
export interface ExampleDatabase {
  orders: {
    id: string;
    sku: string;
    quantity: number;
    status: 'placed' | 'confirmed' | 'cancelled';
  };
  stock: { sku: string; available: number; reserved: number };
  /** One row per reservation; no unique constraint, so a double effect would show. */
  reservations: { id: Generated<string>; order_id: string; sku: string; quantity: number };
  /** What the inventory did with each order event, in the order it did it. */
  inventory_log: { id: Generated<string>; order_id: string; event: string };
  confirmations: { id: Generated<string>; order_id: string };
}

/** Injection token of the application's `Kysely<ExampleDatabase>`. */
export const KYSELY = Symbol('kysely');

/** The tables, in the example's schema, with stock for the SKUs the load generator orders. */
export function exampleSchemaSql(schema: string): string {
  return `
    CREATE SCHEMA IF NOT EXISTS "${schema}";
    SET search_path TO "${schema}";
    CREATE TABLE orders (id text PRIMARY KEY, sku text NOT NULL, quantity int NOT NULL,
                         status text NOT NULL);
    CREATE TABLE stock (sku text PRIMARY KEY, available int NOT NULL, reserved int NOT NULL);
    CREATE TABLE reservations (id bigserial PRIMARY KEY, order_id text NOT NULL,
                               sku text NOT NULL, quantity int NOT NULL);
    CREATE TABLE inventory_log (id bigserial PRIMARY KEY, order_id text NOT NULL,
                                event text NOT NULL);
    CREATE TABLE confirmations (id bigserial PRIMARY KEY, order_id text NOT NULL);
    INSERT INTO stock SELECT sku, 1000000, 0
      FROM unnest(ARRAY['widget-0', 'widget-1', 'widget-2', 'widget-3', 'widget-4', 'gizmo']) AS sku;`;
}

/** Closes the pool after the outbox has stopped, which it does in `beforeApplicationShutdown`. */
@Injectable()
class DatabaseCloser implements OnApplicationShutdown {
  constructor(@Inject(KYSELY) private readonly db: Kysely<ExampleDatabase>) {}

  async onApplicationShutdown(): Promise<void> {
    await this.db.destroy();
  }
}

/** The application's database: one Kysely instance on a pool whose search path is the schema. */
@Global()
@Module({
  providers: [
    {
      provide: KYSELY,
      inject: [EXAMPLE_CONFIG],
      useFactory: (config: ExampleConfig) => {
        const pool = new pg.Pool({
          connectionString: config.databaseUrl,
          max: 20,
          options: `-c search_path="${config.schema}"`,
        });
        pool.on('error', () => {});
        // A checked-out client whose session dies must not kill the process (see the docs).
        pool.on('connect', (client) => client.on('error', () => {}));
        return new Kysely<ExampleDatabase>({ dialect: new PostgresDialect({ pool }) });
      },
    },
    DatabaseCloser,
  ],
  exports: [KYSELY],
})
export class DatabaseModule {}
