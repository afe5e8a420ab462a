import type { TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import type { ClsService } from 'nestjs-cls';
import { DataSource } from 'typeorm';
import { clsTestingModule } from './cls-testing-module.js';
import { DATABASE_URL } from './env.js';

/** `@nestjs-cls/transactional` with its TypeORM adapter, in a Nest testing module of its own. */
export interface ClsTypeOrm {
  readonly cls: ClsService;
  readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>;
  close(): Promise<void>;
}

export async function openClsTypeOrm(url: string = DATABASE_URL): Promise<ClsTypeOrm> {
  const dataSource = await new DataSource({ type: 'postgres', url }).initialize();
  const { app, cls, txHost } = await clsTestingModule<TransactionalAdapterTypeOrm>(
    { token: DataSource, instance: dataSource },
    new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
  );
  return {
    cls,
    txHost,
    async close() {
      await app.close();
      await dataSource.destroy();
    },
  };
}
