// The hosts of docs/orm.md's Drizzle, Knex and MikroORM consumers run (see prelude
// orm-consumer), and its cleanup.
function __hosts() {
  return hosts;
}
// @after
await orm.$client.end();
await knex.destroy();
await mikro.close();
