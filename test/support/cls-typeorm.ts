import { Test } from '@nestjs/testing';
import { ClsPluginTransactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { ClsModule, ClsService } from 'nestjs-cls';
import { DataSource } from 'typeorm';
import { DATABASE_URL } from './env.js';

/** `@nestjs-cls/transactional` with its TypeORM adapter, in a Nest testing module of its own. */
export interface ClsTypeOrm {
  readonly cls: ClsService;
  readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>;
  close(): Promise<void>;
}

export async function openClsTypeOrm(url: string = DATABASE_URL): Promise<ClsTypeOrm> {
  const dataSource = await new DataSource({ type: 'postgres', url }).initialize();
  const database = {
    module: class DatabaseModule {},
    providers: [{ provide: DataSource, useValue: dataSource }],
    exports: [DataSource],
  };
  const app = await Test.createTestingModule({
    imports: [
      ClsModule.forRoot({
        global: true,
        plugins: [
          new ClsPluginTransactional({
            imports: [database],
            adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
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
      await dataSource.destroy();
    },
  };
}
