import { type OutboxCounts, type OutboxStatus, outboxStatus } from '../status/outbox-status.js';
import { COMMON_OPTIONS, databaseUrlOf, parseFlags, printHelp, schemaOf } from './cli-args.js';
import { type CliCommand, EXIT_OK } from './cli-command.js';
import { withPool } from './cli-database.js';
import { DATABASE_TLS_HELP, tlsFilesOf } from './cli-tls.js';
import { cell, json } from './terminal-text.js';

const HELP = `Usage: outboxkit status [options]

Shows, per exchange and in total, the rows waiting in the outbox, how old the oldest one is,
how many wait for a retry (and the last error of one of them), and how many were parked.

Options:
  --database-url <url>  Postgres URL (default: $DATABASE_URL)
  --schema <name>       schema of the outboxkit tables (default: outboxkit)
  --json                print JSON instead of a table
  --processed           also count the processed-messages table (a full count: slow when large)
  -h, --help            show this help
${DATABASE_TLS_HELP}`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  json: { type: 'boolean' },
  processed: { type: 'boolean' },
} as const;

/** `outboxkit status`: how far behind the relay is. */
export const statusCommand: CliCommand = {
  name: 'status',
  summary: 'show pending (of them scheduled), retrying and parked messages per exchange',
  help: HELP,
  async run(argv, env) {
    const { values } = parseFlags(argv, OPTIONS);
    if (values.help) return printHelp(HELP);
    const schema = schemaOf(values.schema);
    const url = databaseUrlOf(values['database-url'], env);
    const tls = tlsFilesOf('database', values, env);
    const status = await withPool({ url, tls }, schema, (pool) =>
      outboxStatus(pool, { schema, includeProcessed: values.processed === true }),
    );
    process.stdout.write(values.json ? json(status) : formatStatusTable(status));
    return EXIT_OK;
  },
};

/** Renders a status as an aligned table, one exchange a row and the total last. */
export function formatStatusTable(status: OutboxStatus): string {
  const header = ['EXCHANGE', 'PENDING', 'SCHEDULED', 'OLDEST', 'RETRYING', 'PARKED'];
  const row = (name: string, c: OutboxCounts) => [
    name,
    String(c.pending),
    String(c.scheduled),
    formatAge(c.oldestPendingAgeSeconds),
    String(c.retrying),
    String(c.parked),
  ];
  const rows = [
    header,
    // Exchange names and errors are anyone's to write: escaped, as dead letters are.
    ...status.exchanges.map((e) => row(cell(e.exchange), e)),
    row('(total)', status.total),
  ];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  // The name column is left-aligned; the counts are right-aligned so their digits line up.
  const lines = rows.map((r) =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '),
  );
  lines.unshift(`outbox "${cell(status.schema)}"`);
  const failing = status.exchanges.filter((e) => e.lastError !== null);
  if (failing.length > 0) {
    lines.push('last error of a retrying row:');
    for (const e of failing) lines.push(`  ${cell(e.exchange)}: ${cell(e.lastError!)}`);
  }
  if (status.processed !== undefined) lines.push(`processed messages: ${status.processed}`);
  return `${lines.join('\n')}\n`;
}

/** `-` for nothing pending, else the largest two units: `42s`, `3m05s`, `2h10m`, `4d03h`. */
export function formatAge(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.floor(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
}
