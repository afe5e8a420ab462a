import type { DeadLetterFilter } from '../dead-letters/dead-letter-filter.js';
import { DeadLetterQueue } from '../dead-letters/dead-letter-queue.js';
import { type ParkedMessage, ParkedMessages } from '../dead-letters/parked-messages.js';
import { isParkedRowId } from '../dead-letters/parked-row-id.js';
import type { QueuedDeadLetter } from '../dead-letters/queued-dead-letter.js';
import type { DeadLetterWorkResult, ProgressListener } from '../dead-letters/replay-result.js';
import type { TlsOptions } from '../options/tls-options.js';
import type { ReplayTarget } from '../protocol/copy-headers.js';
import { isJsonMediaType } from '../protocol/json-media-type.js';
import { mediaType } from '../protocol/media-type.js';
import { closestName } from '../util/closest-name.js';
import { monotonicMs } from '../util/monotonic-clock.js';
import {
  AMQP_URL_OPTION,
  amqpUrlsOf,
  COMMON_OPTIONS,
  databaseUrlOf,
  durationOf,
  parseFlags,
  positiveIntegerOf,
  printHelp,
  schemaOf,
} from './cli-args.js';
import { type CliCommand, type CliEnv, EXIT_FAILURE, EXIT_OK } from './cli-command.js';
import { withPool } from './cli-database.js';
import { AMQP_TLS_HELP, checkCliAmqpTls, DATABASE_TLS_HELP, tlsFilesOf } from './cli-tls.js';
import { formatAge } from './status-command.js';
import { cell, json, terminalText } from './terminal-text.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: outboxkit dead-letters <list|show|replay|purge> [id] [options]

Inspects and repairs what could not be delivered. By default it works on parked outbox rows
(the relay could not publish them; needs the database). With --queue, it works on the dead
letters of that consumer (its queue "<queue>.dlq"; needs RabbitMQ). Reading never removes a
message. A replay keeps the message id and business key, so consumers still dedupe it.

  list                  show the dead letters that match (at most --limit)
  show <id>             show one, with its payload
  replay <id>           replay one: a parked row goes back to the outbox (attempts reset);
                        a queued dead letter is published again, confirmed, then removed
  replay --all|filters  replay every match
  purge <id>|--all|filters
                        delete for good

  <id> is a parked row id, or with --queue a message id (its first copy).

Filters:
  --exchange <name>     first published to this exchange
  --reason <text>       reason or last error contains this text (any case)
  --older-than <age>    dead-lettered at least this long ago (such as 30s, 10m, 2h, 7d)
  --newer-than <age>    dead-lettered at most this long ago
  --message-id <id>     copies of this message id

Options:
  --queue <name>        a consumer's queue: work on "<name>.dlq" instead of parked rows
  --to <queue|exchange> where replayed queue dead letters go: back to the consumer only
                        (default: its queue, or a partitioned consumer's partition set), or
                        to the original exchange and routing key
  --busy-timeout <time> with --queue: how long to wait while another reader (a dashboard,
                        another CLI) has the dead-letter queue (default: 5s)
  --publish-timeout <time>
                        with --queue: how long a replayed copy may wait for its confirm
                        (default: 30s)
  --all                 every dead letter (replay and purge need it, an id, or a filter)
  --limit <n>           list at most n (default: 100)
  --json                print JSON
  --database-url <url>  Postgres URL (default: $DATABASE_URL)
  --amqp-url <url>      RabbitMQ URL; repeat it or separate with commas for a cluster's nodes (default: $AMQP_URL)
  --schema <name>       schema of the outboxkit tables (default: outboxkit)
  -h, --help            show this help

Long replays and purges report progress on stderr. Exit status 1 when a dead letter could not
be replayed (it stays where it was).
${DATABASE_TLS_HELP}${AMQP_TLS_HELP}`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  ...AMQP_URL_OPTION,
  queue: { type: 'string' },
  to: { type: 'string' },
  'busy-timeout': { type: 'string' },
  'publish-timeout': { type: 'string' },
  all: { type: 'boolean' },
  exchange: { type: 'string' },
  reason: { type: 'string' },
  'older-than': { type: 'string' },
  'newer-than': { type: 'string' },
  'message-id': { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const ACTIONS = ['list', 'show', 'replay', 'purge'] as const;
type Action = (typeof ACTIONS)[number];

/** A request, parsed and checked before anything connects. */
interface Request {
  readonly action: Action;
  readonly id: string | undefined;
  readonly all: boolean;
  readonly filter: DeadLetterFilter;
  readonly limit: number;
  readonly json: boolean;
  /** Unset: the queue, or the exchange for a partitioned consumer. */
  readonly to: ReplayTarget | undefined;
}

/** `outboxkit dead-letters`: list, show, replay and purge parked rows and queued dead letters. */
export const deadLettersCommand: CliCommand = {
  name: 'dead-letters',
  summary: 'list, show, replay or purge parked rows and dead-lettered messages',
  help: HELP,
  async run(argv, env) {
    const { values, positionals } = parseFlags(argv, OPTIONS, true);
    if (values.help) return printHelp(HELP);
    const request = requestOf(values, positionals);
    if (values.queue !== undefined) {
      if (values.queue.length === 0) throw new UsageError('--queue must name a queue');
      const amqpUrl = amqpUrlsOf(values['amqp-url'], env);
      const amqpTls = tlsFilesOf('amqp', values, env);
      checkCliAmqpTls(amqpUrl, amqpTls);
      const busyTimeoutMs = durationOf('--busy-timeout', values['busy-timeout']);
      const publishTimeoutMs = durationOf('--publish-timeout', values['publish-timeout']);
      const dlq = new DeadLetterQueue({
        amqpUrl,
        ...(amqpTls && { amqpTls }),
        queue: values.queue,
        busyTimeoutMs,
        publishTimeoutMs,
      });
      try {
        return await runOnQueue(dlq, request);
      } finally {
        await dlq.close();
      }
    }
    for (const flag of ['to', 'busy-timeout', 'publish-timeout'] as const) {
      if (values[flag] !== undefined) {
        throw new UsageError(`--${flag} applies to --queue dead letters only`);
      }
    }
    // What ParkedMessages would refuse after connecting, as a failure (exit 1): a usage error.
    if (request.id !== undefined && !isParkedRowId(request.id)) {
      throw new UsageError(
        `a parked row id is a number up to 2^63 - 1 (the id column of list), got ${JSON.stringify(request.id)}; a dead letter of a queue needs --queue`,
      );
    }
    const tls = tlsFilesOf('database', values, env);
    return runOnParked(values['database-url'], schemaOf(values.schema), env, request, tls);
  },
};

function requestOf(
  values: Record<string, string | boolean | string[] | undefined>,
  positionals: readonly string[],
): Request {
  const [action, id, ...extra] = positionals;
  if (action === undefined || !(ACTIONS as readonly string[]).includes(action)) {
    const guess = action === undefined ? undefined : closestName(action, ACTIONS);
    throw new UsageError(
      `name an action: ${ACTIONS.join(', ')}${action === undefined ? '' : ` (got ${JSON.stringify(action)}${guess ? `; did you mean ${guess}?` : ''})`}`,
    );
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])}`);
  const text = (name: string) => values[name] as string | undefined;
  for (const name of ['exchange', 'reason', 'message-id']) {
    // An empty text filter would match every dead letter: `purge --reason ""` would purge all.
    if (text(name) === '') throw new UsageError(`--${name} must not be empty`);
  }
  const filter: DeadLetterFilter = {
    ...(text('exchange') !== undefined && { exchange: text('exchange') }),
    ...(text('reason') !== undefined && { reason: text('reason') }),
    ...(text('message-id') !== undefined && { messageId: text('message-id') }),
    ...(text('older-than') !== undefined && {
      olderThanMs: ageOf('--older-than', text('older-than')!),
    }),
    ...(text('newer-than') !== undefined && {
      newerThanMs: ageOf('--newer-than', text('newer-than')!),
    }),
  };
  const all = values.all === true;
  const hasFilter = Object.keys(filter).length > 0;
  if (action === 'show' && id === undefined) throw new UsageError('show needs an id');
  if (id !== undefined && (action === 'list' || all || hasFilter)) {
    throw new UsageError(
      action === 'list'
        ? 'list takes filters, not an id; use show <id>'
        : 'give either an id, or --all or filters, not both',
    );
  }
  if ((action === 'replay' || action === 'purge') && id === undefined && !all && !hasFilter) {
    throw new UsageError(`${action} needs an id, filters, or --all to ${action} every dead letter`);
  }
  if (all && hasFilter) throw new UsageError('--all and filters exclude each other');
  const to = text('to');
  if (to !== undefined && to !== 'queue' && to !== 'exchange') {
    throw new UsageError(`--to must be queue or exchange, got ${JSON.stringify(to)}`);
  }
  if (to !== undefined && action !== 'replay') {
    throw new UsageError(`--to says where a replay sends dead letters; ${action} does not take it`);
  }
  return {
    action: action as Action,
    id,
    all,
    filter,
    limit: positiveIntegerOf('--limit', text('limit')) ?? 100,
    json: values.json === true,
    to,
  };
}

const AGE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const AGE_UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** An age with its unit, which is required: `--older-than 7` could mean seconds or days. */
export function ageOf(flag: string, value: string): number {
  const match = AGE.exec(value.trim());
  if (!match) {
    throw new UsageError(
      `${flag} must be an age with a unit such as 30s, 10m, 2h or 7d, got ${JSON.stringify(value)}`,
    );
  }
  return Math.round(Number(match[1]) * AGE_UNIT_MS[match[2] as keyof typeof AGE_UNIT_MS]);
}

async function runOnParked(
  urlFlag: string | undefined,
  schema: string,
  env: CliEnv,
  r: Request,
  tls: TlsOptions | undefined,
): Promise<number> {
  const url = databaseUrlOf(urlFlag, env);
  return withPool({ url, tls }, schema, async (pool) => {
    const parked = new ParkedMessages({ pool, schema });
    switch (r.action) {
      case 'list': {
        const rows = await parked.list(r.filter, { limit: r.limit });
        write(r.json ? json(rows) : parkedTable(rows, await parked.count(r.filter), schema));
        return EXIT_OK;
      }
      case 'show': {
        const row = await parked.show(r.id!);
        const { payload, ...rest } = row;
        write(
          r.json
            ? json({ ...rest, payload: payloadText(payload, row.contentType) })
            : details({ schema, ...rest }, payload, row.contentType),
        );
        return EXIT_OK;
      }
      case 'replay':
      case 'purge': {
        const verb = r.action === 'replay' ? 'replayed' : 'purged';
        if (r.id !== undefined) {
          await (r.action === 'replay' ? parked.replayOne(r.id) : parked.purgeOne(r.id));
          return report(r, verb, 'parked row', { done: 1, failed: [] }, schema);
        }
        const progress = progressLine(verb);
        const options = { onProgress: progress.update };
        const result = await (r.action === 'replay'
          ? parked.replay(r.filter, options)
          : parked.purge(r.filter, options));
        progress.end();
        return report(r, verb, 'parked row', result, schema);
      }
    }
  });
}

async function runOnQueue(dlq: DeadLetterQueue, r: Request): Promise<number> {
  switch (r.action) {
    case 'list': {
      const rows = await dlq.list(r.filter, { limit: r.limit });
      write(r.json ? json(rows) : queueTable(dlq.name, rows, r.limit, await dlq.depth()));
      return EXIT_OK;
    }
    case 'show': {
      const { payload, ...rest } = await dlq.show(r.id!);
      write(
        r.json
          ? json({ ...rest, payload: payloadText(payload, rest.contentType) })
          : details(rest, payload, rest.contentType),
      );
      return EXIT_OK;
    }
    case 'replay': {
      let result: DeadLetterWorkResult = { done: 1, failed: [] };
      if (r.id !== undefined) {
        await dlq.replayOne(r.id, r.to === undefined ? {} : { to: r.to });
      } else {
        const progress = progressLine('replayed');
        result = await dlq.replay(r.all ? {} : r.filter, {
          ...(r.to !== undefined && { to: r.to }),
          onProgress: progress.update,
        });
        progress.end();
      }
      if (result.done > 0 && r.to !== 'exchange') await warnIfUnconsumed(dlq);
      return report(r, 'replayed', 'dead letter', result);
    }
    case 'purge': {
      if (r.id !== undefined) {
        await dlq.purgeOne(r.id);
        return report(r, 'purged', 'dead letter', { done: 1, failed: [] });
      }
      const progress = progressLine('purged');
      const result = await dlq.purge(r.all ? {} : r.filter, { onProgress: progress.update });
      progress.end();
      return report(r, 'purged', 'dead letter', result);
    }
  }
}

/**
 * Replayed back to a queue nothing consumes (its consumer renamed, moved or stopped): the copies
 * wait there, which a "Replayed N" alone would not tell.
 */
async function warnIfUnconsumed(dlq: DeadLetterQueue): Promise<void> {
  if ((await dlq.queueConsumers().catch(() => undefined)) !== 0) return;
  process.stderr.write(
    `warning: queue ${JSON.stringify(dlq.queue)} has no consumer now: the replayed messages wait there until one starts. If its consumer was renamed or moved to another queue, replay with --to exchange (to their original exchange and routing key) instead.\n`,
  );
}

function write(text: string): void {
  process.stdout.write(text);
}

/** `schema`: where parked rows are; their ids are numbered in each schema anew. */
function report(
  r: Request,
  verb: string,
  noun: string,
  result: DeadLetterWorkResult,
  schema?: string,
): number {
  if (r.json) {
    write(json(result));
  } else {
    const where = schema === undefined ? '' : ` of schema "${schema}"`;
    write(`${capitalize(verb)} ${result.done} ${noun}${result.done === 1 ? '' : 's'}${where}.\n`);
    for (const f of result.failed) write(`not ${verb}: ${cell(f.id)}: ${cell(f.error)}\n`);
  }
  return result.failed.length > 0 ? EXIT_FAILURE : EXIT_OK;
}

function capitalize(word: string): string {
  return `${word[0]!.toUpperCase()}${word.slice(1)}`;
}

/**
 * A progress count on stderr: one line rewritten in place on a terminal, else a line every few
 * seconds (a log file should not get one line per message).
 */
function progressLine(verb: string): { update: ProgressListener; end: () => void } {
  const tty = process.stderr.isTTY === true;
  const everyMs = tty ? 100 : 5000;
  let last = monotonicMs();
  let shown = false;
  const text = (done: number, failed: number) =>
    `${verb} ${done} so far${failed > 0 ? `, ${failed} failed` : ''}`;
  return {
    update(done, failed) {
      const now = monotonicMs();
      if (now - last < everyMs) return;
      last = now;
      shown = true;
      process.stderr.write(tty ? `\r${text(done, failed)}` : `${text(done, failed)}\n`);
    },
    end() {
      if (shown && tty) process.stderr.write('\n');
    },
  };
}

function table(cells: string[][]): string {
  const rows = cells.map((r) => r.map(cell));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function ageSince(date: Date | undefined): string {
  return date === undefined ? '?' : formatAge(Math.max(0, (Date.now() - date.getTime()) / 1000));
}

function clip(text: string, max = 60): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function parkedTable(rows: readonly ParkedMessage[], total: number, schema: string): string {
  if (rows.length === 0) return `No parked rows of schema "${schema}" match.\n`;
  const body = rows.map((m) => [
    m.id,
    m.messageId,
    ageSince(m.parkedAt),
    m.exchange,
    m.routingKey,
    clip(m.reason),
  ]);
  const head = ['ID', 'MESSAGE ID', 'PARKED', 'EXCHANGE', 'ROUTING KEY', 'REASON'];
  return `${table([head, ...body])}\n${footer(rows.length, total)}(schema "${schema}")\n`;
}

function queueTable(
  queue: string,
  rows: readonly QueuedDeadLetter[],
  limit: number,
  depth: number,
): string {
  if (rows.length === 0) return `No dead letters in ${queue} match.\n`;
  const body = rows.map((m) => [
    m.messageId ?? '-',
    ageSince(m.deadAt),
    m.exchange ?? '-',
    m.routingKey ?? '-',
    m.reason ?? '-',
    clip(m.error ?? ''),
  ]);
  const head = ['MESSAGE ID', 'DEAD', 'EXCHANGE', 'ROUTING KEY', 'REASON', 'ERROR'];
  // How many match is not known without reading the whole queue: more may match only when the
  // list stopped at the limit, and the queue holds more than were shown.
  const more = rows.length >= limit && rows.length < depth;
  const tail = more
    ? `(${rows.length} shown, the --limit; ${depth} in the queue, matching or not; raise --limit to see more)\n`
    : '';
  return `${queue}\n${table([head, ...body])}\n${tail}`;
}

function footer(shown: number, total: number): string {
  return shown < total ? `(${shown} shown of ${total} match; raise --limit to see more)\n` : '';
}

function details(fields: object, payload: Buffer, contentType: string | undefined): string {
  const lines = Object.entries(fields).map(([k, v]) => {
    // Absent reads `-`, as in the tables, whether the row has null or the headers nothing.
    const text =
      v === undefined || v === null
        ? '-'
        : v instanceof Date
          ? v.toISOString()
          : typeof v === 'object'
            ? JSON.stringify(v)
            : String(v);
    // Further lines of a value (an error with a stack) indented under its name.
    return `${k}: ${terminalText(text).replace(/\n/g, '\n  ')}`;
  });
  return `${lines.join('\n')}\npayload:\n${terminalText(payloadText(payload, contentType))}\n`;
}

/** The payload as text when it is text, else base64 (prefixed so it is not taken for text). */
function payloadText(payload: Buffer, contentType: string | undefined): string {
  const type = mediaType(contentType ?? 'application/json');
  const isText = type.startsWith('text/') || isJsonMediaType(type);
  return isText ? payload.toString('utf8') : `base64:${payload.toString('base64')}`;
}
