import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ConfigurationError } from '../errors/configuration-error.js';
import { outboxTables } from '../sql/outbox-tables.js';
import { closestName } from '../util/closest-name.js';
import { MAX_TIMER_MS, MAX_TIMER_TEXT } from '../util/duration-option.js';
import { errorMessage } from '../util/logger.js';
import { isSchemeUrl, refusedUrlText } from '../util/refused-url.js';
import { type CliEnv, EXIT_OK } from './cli-command.js';
import { UsageError } from './usage-error.js';

/** How every command that talks to Postgres declares its TLS flags: file paths. */
export const DATABASE_TLS_OPTIONS = {
  'database-ca': { type: 'string' },
  'database-cert': { type: 'string' },
  'database-key': { type: 'string' },
} as const;

/** How every command that talks to RabbitMQ declares its TLS flags: file paths. */
export const AMQP_TLS_OPTIONS = {
  'amqp-ca': { type: 'string' },
  'amqp-cert': { type: 'string' },
  'amqp-key': { type: 'string' },
} as const;

/** The flags every command takes; spread into each command's `parseArgs` options. */
export const COMMON_OPTIONS = {
  'database-url': { type: 'string' },
  ...DATABASE_TLS_OPTIONS,
  schema: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/**
 * Runs a `parseArgs` call and turns what it throws (unknown flag, missing value, stray argument)
 * into a `UsageError`, so a wrong command line exits with status 2 and Node's own message.
 */
export function parseCommandLine<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError(errorMessage(error));
  }
}

type FlagOptions = NonNullable<ParseArgsConfig['options']>;

/** What `parseArgs` returns for a command's options. */
export type ParsedFlags<O extends FlagOptions> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O; strict: true; allowPositionals: boolean }>
>;

/**
 * A command's flags (and positionals, when it takes them), strictly parsed; see
 * `parseCommandLine`. A flag that takes one value and is given twice is refused: `parseArgs`
 * would keep the last one silently, and a second `--amqp-url` meant as a failover node would be
 * the only one used.
 */
export function parseFlags<const O extends FlagOptions>(
  argv: readonly string[],
  options: O,
  allowPositionals = false,
): ParsedFlags<O> {
  let parsed: ReturnType<
    typeof parseArgs<{
      args: string[];
      options: O;
      strict: true;
      allowPositionals: boolean;
      tokens: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: withNegativeValues(argv, options),
      options,
      strict: true,
      allowPositionals,
      tokens: true,
    });
  } catch (error) {
    const unknown =
      (error as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' &&
      /Unknown option '([^']+)'/.exec(errorMessage(error));
    const guess = unknown ? closestName(unknown[1]!, Object.keys(options)) : undefined;
    // Where positionals are allowed, Node adds advice for an argument that starts with "-"
    // ("place it at the end of the command after '--'"): a misspelt flag is far likelier.
    const said = unknown ? `Unknown option '${unknown[1]}'` : errorMessage(error);
    throw new UsageError(guess ? `${said}; did you mean --${guess}?` : said);
  }
  const seen = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) {
      throw new UsageError(`--${token.name} was given twice; it takes one value`);
    }
    seen.add(token.name);
  }
  const { tokens: _, ...flags } = parsed;
  return flags as ParsedFlags<O>;
}

/**
 * `--flag -1` as `--flag=-1`: `parseArgs` takes the `-1` for a flag and refuses the pair as
 * ambiguous, and the user would not learn that the value itself is wrong (which the command's
 * own check then says).
 */
function withNegativeValues(argv: readonly string[], options: FlagOptions): string[] {
  const args: string[] = [];
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const takesValue = arg.startsWith('--') && options[arg.slice(2)]?.type === 'string';
    if (takesValue && next !== undefined && /^-\d/.test(next)) {
      args.push(`${arg}=${next}`);
      i += 1;
    } else {
      args.push(arg);
    }
  }
  return args;
}

/** Prints a command's help for `--help`; returns the exit status. */
export function printHelp(help: string): number {
  process.stdout.write(help);
  return EXIT_OK;
}

/** The Postgres URL from `--database-url`, else `DATABASE_URL`; its password is never echoed. */
export function databaseUrlOf(flag: string | undefined, env: CliEnv): string {
  return urlOf(flag ?? env.DATABASE_URL, '--database-url', 'DATABASE_URL', {
    protocols: ['postgres:', 'postgresql:'],
    example: 'postgres://user:password@host:5432/database',
  });
}

/**
 * How a command declares `--amqp-url` (repeatable, one node of a cluster each) and the TLS
 * files of its connections.
 */
export const AMQP_URL_OPTION = {
  'amqp-url': { type: 'string', multiple: true },
  ...AMQP_TLS_OPTIONS,
} as const;

/**
 * The RabbitMQ URLs from `--amqp-url` (repeated, or comma-separated), else `AMQP_URL`
 * (comma-separated): the nodes of a cluster, tried in turn.
 */
export function amqpUrlsOf(flags: readonly string[] | undefined, env: CliEnv): string[] {
  const fromFlags = flags !== undefined && flags.length > 0;
  const values = fromFlags ? flags.flatMap(splitUrls) : splitUrls(env.AMQP_URL ?? '');
  if (values.length === 0) {
    return [amqpUrlOf(undefined, env)];
  }
  return values.map((value) => amqpUrlOf(value, {}));
}

function splitUrls(value: string): string[] {
  return value
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url.length > 0);
}

/** One RabbitMQ URL from a flag value, else `AMQP_URL`. */
export function amqpUrlOf(flag: string | undefined, env: CliEnv): string {
  return urlOf(flag ?? env.AMQP_URL, '--amqp-url', 'AMQP_URL', {
    protocols: ['amqp:', 'amqps:'],
    example: 'amqp://user:password@host:5672',
  });
}

function urlOf(
  value: string | undefined,
  flag: string,
  variable: string,
  { protocols, example }: { protocols: readonly string[]; example: string },
): string {
  if (value === undefined || value.trim() === '') {
    throw new UsageError(`no ${variable}: set it or pass ${flag} <url> (such as ${example})`);
  }
  let protocol: string;
  try {
    protocol = new URL(value).protocol;
  } catch {
    throw new UsageError(`${flag} / ${variable} is not a URL; expected one such as ${example}`);
  }
  if (!protocols.includes(protocol) || !isSchemeUrl(value)) {
    throw new UsageError(
      `${flag} / ${variable} must start with ${protocols.map((p) => `${p}//`).join(' or ')}, got ${refusedUrlText(value)}`,
    );
  }
  return value;
}

/** The schema from `--schema`, checked the way the library checks it. */
export function schemaOf(flag: string | undefined): string {
  const schema = flag ?? 'outboxkit';
  try {
    return outboxTables(schema).schemaName;
  } catch (error) {
    throw usageErrorFor(error, { schema: '--schema' });
  }
}

/** Parses a flag that must be a positive integer; `undefined` when the flag was not given. */
export function positiveIntegerOf(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * Parses `--heartbeat`, which AMQP counts in whole seconds: a bare number is seconds (as RabbitMQ
 * and the option `heartbeatSeconds` count it), and a duration with a unit (`10s`, `1m`) is taken
 * as every other time flag takes it. `undefined` when the flag was not given.
 */
export function heartbeatSecondsOf(flag: string, value: string | undefined): number | undefined {
  if (value === undefined || /^\d+$/.test(value.trim()))
    return positiveIntegerOf(flag, value?.trim());
  const ms = durationOf(flag, value)!;
  if (ms % 1000 !== 0) {
    throw new UsageError(`${flag} is in whole seconds, got ${JSON.stringify(value)}`);
  }
  return ms / 1000;
}

const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * Parses a duration flag in milliseconds: `500` and `500ms` are milliseconds, `2s` seconds, `1m`
 * a minute, `1h` an hour, `1d` a day (the units `dead-letters --older-than` takes too).
 * `undefined` when the flag was not given.
 */
export function durationOf(
  flag: string,
  value: string | undefined,
  options: { allowZero?: boolean } = {},
): number | undefined {
  if (value === undefined) return undefined;
  const match = DURATION.exec(value.trim());
  if (match && match[2] === undefined && !Number.isInteger(Number(match[1]))) {
    // Without a unit a number is milliseconds: "1.5" is more likely meant as seconds.
    throw new UsageError(
      `${flag} without a unit is in milliseconds, and ${JSON.stringify(value)} is not a whole number of them: give a unit (${value.trim()}s) or whole milliseconds`,
    );
  }
  const ms = match
    ? Math.round(Number(match[1]) * UNIT_MS[(match[2] ?? 'ms') as keyof typeof UNIT_MS])
    : Number.NaN;
  if (!Number.isSafeInteger(ms) || ms < 0 || (ms === 0 && !options.allowZero)) {
    throw new UsageError(
      ms === 0
        ? `${flag} must be a duration above 0, such as 500ms, 2s or 1m, got ${JSON.stringify(value)}`
        : `${flag} must be a duration such as 500ms, 2s or 1m, got ${JSON.stringify(value)}`,
    );
  }
  if (ms > MAX_TIMER_MS) {
    // Node fires a longer timer after 1 ms: a stop would give up, stats would log in a loop.
    throw new UsageError(`${flag} must be at most ${MAX_TIMER_TEXT}, got ${JSON.stringify(value)}`);
  }
  return ms;
}

/**
 * Turns a `ConfigurationError` of the library into a `UsageError` that names the flag rather
 * than the option, so the message points at what the user typed. Anything else is returned as is.
 */
export function usageErrorFor(error: unknown, flags: Readonly<Record<string, string>>): unknown {
  if (!(error instanceof ConfigurationError)) return error;
  const flag = flags[error.option];
  // The advice names options by their API names (`heartbeatSeconds`): a CLI user knows their
  // flags. Only names no prose uses: camelCase or dotted, not `schema`.
  const inFlags = (text: string) =>
    Object.entries(flags)
      .filter(([option]) => /[A-Z.]/.test(option))
      .reduce(
        (said, [option, name]) =>
          said.replace(new RegExp(`\\b${option.replaceAll('.', '\\.')}\\b`, 'g'), name),
        text,
      );
  if (flag === undefined) return new UsageError(inFlags(error.message));
  const detail = error.message.replace(/^Invalid option `[^`]*`: /, '');
  return new UsageError(`${flag} ${inFlags(detail)}`);
}
