// The client `prisma generate` writes into the project of docs/orm.md (its
// src/generated/prisma/client.ts): outboxkit's own, whose schema has the same `Order` model.
// Mapped by `<!-- snippet: module=generated/prisma/client.ts:prisma-client -->`, and written next to the run's module
// when the block runs (from dist/test/docs-snippets-run-*/generated/prisma/, the same path reaches
// the compiled client in dist/test/support/prisma/generated/).
export * from '../../../../test/support/prisma/generated/client.js';
