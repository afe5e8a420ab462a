// The hosts of docs/orm.md's TypeORM consumer run (see prelude orm-consumer), and its cleanup.
function __hosts() {
  return [host];
}
// @after
await dataSource.destroy();
