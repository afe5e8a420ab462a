import { migrate } from '../migrate/migrate.js';
import { COMMON_OPTIONS, databaseUrlOf, parseFlags, printHelp, schemaOf } from './cli-args.js';
import { type CliCommand, EXIT_OK } from './cli-command.js';
import { withPool } from './cli-database.js';
import { DATABASE_TLS_HELP, tlsFilesOf } from './cli-tls.js';

const HELP = `Usage: outboxkit migrate [options]

Creates or upgrades the outboxkit tables in a schema. Safe to run at every deploy and from
several places at once: a lock lets one run apply, and a run with nothing to do changes nothing.

Options:
  --database-url <url>  Postgres URL (default: $DATABASE_URL)
  --schema <name>       schema of the outboxkit tables (default: outboxkit)
  -h, --help            show this help
${DATABASE_TLS_HELP}`;

/** `outboxkit migrate`: applies the shipped migrations. */
export const migrateCommand: CliCommand = {
  name: 'migrate',
  summary: 'create or upgrade the outboxkit tables',
  help: HELP,
  async run(argv, env) {
    const { values } = parseFlags(argv, COMMON_OPTIONS);
    if (values.help) return printHelp(HELP);
    const schema = schemaOf(values.schema);
    const url = databaseUrlOf(values['database-url'], env);
    const tls = tlsFilesOf('database', values, env);
    const { applied } = await withPool({ url, tls }, schema, (pool) => migrate(pool, { schema }));
    process.stdout.write(
      applied.length === 0
        ? `Schema "${schema}" is up to date; nothing applied.\n`
        : `Schema "${schema}": applied migration${applied.length === 1 ? '' : 's'} ${applied.join(', ')}.\n`,
    );
    return EXIT_OK;
  },
};
