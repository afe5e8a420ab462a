import { readFileSync } from 'node:fs';
import { closestName } from '../util/closest-name.js';
import { errorMessage } from '../util/logger.js';
import { type CliCommand, type CliEnv, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './cli-command.js';
import { dashboardCommand } from './dashboard-command.js';
import { deadLettersCommand } from './dead-letters-command.js';
import { migrateCommand } from './migrate-command.js';
import { relayCommand } from './relay-command.js';
import { statusCommand } from './status-command.js';
import { UsageError } from './usage-error.js';

const COMMANDS: readonly CliCommand[] = [
  migrateCommand,
  relayCommand,
  statusCommand,
  deadLettersCommand,
  dashboardCommand,
];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: outboxkit <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run \`outboxkit <command> --help\` for a command's options.
Postgres and RabbitMQ URLs come from --database-url / --amqp-url or DATABASE_URL / AMQP_URL.
`;
}

function version(): string {
  // Read at run time: the package.json two folders above dist/src/cli/ is the installed one.
  const file = new URL('../../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/**
 * Runs one `outboxkit` command line (without `node` and the script) and resolves with the exit
 * status: 0 done, 1 failed at run time, 2 wrong command line. Messages go to stderr; output to
 * stdout.
 */
export async function runCli(argv: readonly string[], env: CliEnv): Promise<number> {
  // `outboxkit help relay` is `outboxkit relay --help`.
  const line = argv[0] === 'help' && argv.length === 2 ? [argv[1]!, '--help'] : argv;
  const [name, ...rest] = line;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    // Without a command the line is wrong: the usage goes where errors go.
    if (name === undefined) {
      process.stderr.write(mainHelp());
      return EXIT_USAGE;
    }
    process.stdout.write(mainHelp());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return EXIT_OK;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const names = COMMANDS.map((c) => c.name);
    const guess = closestName(name, names);
    process.stderr.write(
      `outboxkit: unknown command ${JSON.stringify(name)}${guess ? `; did you mean ${guess}?` : ''}; the commands are ${names.join(', ')}. See \`outboxkit --help\`.\n`,
    );
    return EXIT_USAGE;
  }
  try {
    return await command.run(rest, env);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(
        `outboxkit ${name}: ${error.message}\nSee \`outboxkit ${name} --help\`.\n`,
      );
      return EXIT_USAGE;
    }
    process.stderr.write(`outboxkit ${name}: ${errorMessage(error)}\n`);
    return EXIT_FAILURE;
  }
}
