// biome-ignore-all lint/correctness/noUnusedVariables: a prelude declares what the snippets use
// The application the docs' snippets assume and do not repeat: its Kysely `db` on a pg `pool`,
// its tables, and the URLs of its database and broker. Prepended to a snippet by
// `<!-- snippet: prelude=app -->` (see test/docs-snippets.test.ts).
import * as __kysely from 'kysely';
import __pg from 'pg';

interface Database {
  orders: { id: string; total: number };
  customers: { id: string; name: string };
  invoices: { order_id: string; customer_id: string };
}

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const amqpUrl = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const pool = new __pg.Pool({ connectionString: databaseUrl });
const db = new __kysely.Kysely<Database>({ dialect: new __kysely.PostgresDialect({ pool }) });
const order = { id: crypto.randomUUID(), total: 42 };
// @after
await db.destroy();
