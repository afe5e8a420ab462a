import { MikroORM } from '@mikro-orm/postgresql';
import { PrismaPg } from '@prisma/adapter-pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import knexFactory from 'knex';
import { DATABASE_URL } from './env.js';
import { PrismaClient } from './prisma/generated/client.js';

/** Each ORM's database object on the test database, for the tests of what adapters refuse. */
export async function openOrmHandles() {
  const knex = knexFactory({ client: 'pg', connection: DATABASE_URL });
  const db = drizzle(DATABASE_URL);
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: DATABASE_URL }) });
  const orm = await MikroORM.init({
    clientUrl: DATABASE_URL,
    entities: [],
    discovery: { warnWhenNoEntities: false },
  });
  return {
    knex,
    db,
    prisma,
    orm,
    async close(): Promise<void> {
      await knex.destroy();
      await db.$client.end();
      await prisma.$disconnect();
      await orm.close();
    },
  };
}
