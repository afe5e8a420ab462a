import { EntitySchema, Utils } from '@mikro-orm/core';
import { MikroORM } from '@mikro-orm/postgresql';

/**
 * The MikroORM installed: the devDependencies' 6, or 7 where CI puts it in their place. The
 * tests are compiled against 6's types; what they use of MikroORM is the same in 7.
 */
export const MIKRO_ORM_VERSION: string = Utils.getORMVersion();
export const MIKRO_ORM_MAJOR = Number(MIKRO_ORM_VERSION.split('.')[0]);

/** A row of the consumer fixture's `effects` table, as a MikroORM entity without decorators. */
export interface Effect {
  id?: number;
  consumer: string;
  key: string;
  attempt: number;
}

export function effectEntity(schema: string): EntitySchema<Effect> {
  return new EntitySchema<Effect>({
    name: 'Effect',
    tableName: 'effects',
    schema,
    properties: {
      id: { type: 'number', primary: true, autoincrement: true },
      consumer: { type: 'string' },
      key: { type: 'string' },
      attempt: { type: 'number' },
    },
  });
}

/** MikroORM on `url`, with the entities given (an EntitySchema works alike in 6 and 7). */
export function openMikroOrm(url: string, entities: EntitySchema[] = []): Promise<MikroORM> {
  return MikroORM.init({ clientUrl: url, entities, discovery: { warnWhenNoEntities: false } });
}
