import { Test } from '@nestjs/testing';
import { ClsPluginTransactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterDrizzleOrm } from '@nestjs-cls/transactional-adapter-drizzle-orm';
import { drizzle, type NodePgDatabase } from 'drizzle-orm/node-postgres';
import { ClsModule, ClsService } from 'nestjs-cls';
import pg from 'pg';
import { DATABASE_URL } from './env.js';

const DRIZZLE = Symbol('drizzle');

/** `@nestjs-cls/transactional` with its Drizzle adapter on a pg pool, in a testing module. */
export interface ClsDrizzle {
  readonly cls: ClsService;
  readonly txHost: TransactionHost<TransactionalAdapterDrizzleOrm<NodePgDatabase>>;
  close(): Promise<void>;
}

export async function openClsDrizzle(url: string = DATABASE_URL): Promise<ClsDrizzle> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  const database = {
    module: class DrizzleModule {},
    providers: [{ provide: DRIZZLE, useValue: drizzle(pool) }],
    exports: [DRIZZLE],
  };
  const app = await Test.createTestingModule({
    imports: [
      ClsModule.forRoot({
        global: true,
        plugins: [
          new ClsPluginTransactional({
            imports: [database],
            adapter: new TransactionalAdapterDrizzleOrm({ drizzleInstanceToken: DRIZZLE }),
          }),
        ],
      }),
    ],
  }).compile();
  await app.init();
  return {
    cls: app.get(ClsService),
    txHost: app.get(TransactionHost),
    async close() {
      await app.close();
      await pool.end();
    },
  };
}
