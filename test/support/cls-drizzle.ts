import type { TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterDrizzleOrm } from '@nestjs-cls/transactional-adapter-drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import type { ClsService } from 'nestjs-cls';
import pg from 'pg';
import { clsTestingModule } from './cls-testing-module.js';
import { DATABASE_URL } from './env.js';

const DRIZZLE = Symbol('drizzle');

type DrizzleAdapter = TransactionalAdapterDrizzleOrm<NodePgDatabase>;

/** `@nestjs-cls/transactional` with its Drizzle adapter on a pg pool, in a testing module. */
export interface ClsDrizzle {
  readonly cls: ClsService;
  readonly txHost: TransactionHost<DrizzleAdapter>;
  close(): Promise<void>;
}

export async function openClsDrizzle(url: string = DATABASE_URL): Promise<ClsDrizzle> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  const { app, cls, txHost } = await clsTestingModule<DrizzleAdapter>(
    { token: DRIZZLE, instance: drizzle(pool) },
    new TransactionalAdapterDrizzleOrm({ drizzleInstanceToken: DRIZZLE }),
  );
  return {
    cls,
    txHost,
    async close() {
      await app.close();
      await pool.end();
    },
  };
}
