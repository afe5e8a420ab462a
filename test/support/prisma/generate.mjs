// Writes the Prisma client of the ORM tests to ./generated (git-ignored), before tsc compiles them.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const schema = fileURLToPath(new URL('schema.prisma', import.meta.url));
execFileSync(process.execPath, [cli, 'generate', '--schema', schema], {
  stdio: ['ignore', 'ignore', 'inherit'],
  env: {
    ...process.env,
    // `prisma generate` fetches the schema engine from binaries.prisma.sh, though only
    // `prisma migrate` and `db push` run it; any existing file stands in for it.
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? process.execPath,
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  },
});
