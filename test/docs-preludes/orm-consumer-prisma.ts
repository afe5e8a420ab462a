// The hosts of docs/orm.md's Prisma consumer run (see prelude orm-consumer), and its cleanup.
function __hosts() {
  return [host];
}
// @after
await prisma.$disconnect();
