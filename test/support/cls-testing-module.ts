import { Test, type TestingModule } from '@nestjs/testing';
import {
  ClsPluginTransactional,
  type TransactionalAdapter,
  TransactionHost,
} from '@nestjs-cls/transactional';
import { ClsModule, ClsService } from 'nestjs-cls';

/** A module that provides the ORM's entry point under the token its CLS adapter names. */
export interface DatabaseProvider {
  readonly token: unknown;
  readonly instance: unknown;
}

/**
 * `@nestjs-cls/transactional` with `adapter` on the ORM entry point `database`, in a Nest
 * testing module of its own, initialised.
 */
export async function clsTestingModule<A>(
  database: DatabaseProvider,
  // biome-ignore lint/suspicious/noExplicitAny: each adapter types its own options
  adapter: TransactionalAdapter<any, any, any>,
): Promise<{ app: TestingModule; cls: ClsService; txHost: TransactionHost<A> }> {
  const databaseModule = {
    module: class DatabaseModule {},
    providers: [{ provide: database.token as string, useValue: database.instance }],
    exports: [database.token as string],
  };
  const app = await Test.createTestingModule({
    imports: [
      ClsModule.forRoot({
        global: true,
        plugins: [new ClsPluginTransactional({ imports: [databaseModule], adapter })],
      }),
    ],
  }).compile();
  await app.init();
  return { app, cls: app.get(ClsService), txHost: app.get(TransactionHost) };
}
