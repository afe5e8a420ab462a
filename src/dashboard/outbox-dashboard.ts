import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { amqpUrlList } from '../amqp/amqp-urls.js';
import { deadLetterQueueName } from '../consumer/consumer-topology.js';
import { DeadLetterNotFoundError } from '../dead-letters/dead-letter-not-found-error.js';
import { ParkedMessages } from '../dead-letters/parked-messages.js';
import type { DeadLetterWorkResult } from '../dead-letters/replay-result.js';
import { ConfigurationError } from '../errors/configuration-error.js';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { booleanOption } from '../options/boolean-option.js';
import { RENAMED_OPTIONS } from '../options/renamed-options.js';
import { stringList } from '../options/string-list.js';
import { rejectUnknownOptions } from '../options/unknown-options.js';
import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { type OutboxStatus, outboxStatus } from '../status/outbox-status.js';
import { durationMs } from '../util/duration-option.js';
import { errorMessage, type OutboxLogger, silentLogger } from '../util/logger.js';
import { positiveInteger } from '../util/positive-integer.js';
import { resolveLogger } from '../util/resolve-logger.js';
import { checkAllowedHostNames } from './allowed-host-names.js';
import { DASHBOARD_OPTION_NAMES, type OutboxDashboardOptions } from './dashboard-options.js';
import { dashboardPage } from './dashboard-page.js';
import { type ParkedRowView, parkedRowView } from './dashboard-views.js';
import { readOutboxActivity } from './outbox-activity.js';
import { QueueDeadLetters, type QueueDeadLettersView } from './queue-dead-letters.js';
import { type OutboxRates, RateTracker } from './rate-tracker.js';
import { crossSiteRefusal, hostRefusal, LOOPBACK_HOSTS, remoteRefusal } from './request-guard.js';

/** What `GET api/status` answers. */
export interface DashboardStatus {
  /** Replay and purge are allowed; without, the page shows no buttons for them. */
  readonly allowReplay: boolean;
  readonly refreshIntervalMs: number;
  readonly status: OutboxStatus;
  /**
   * Rates over the last ten seconds or so, from Postgres' table statistics sampled at each
   * status request: they cover every relay on the database, not only this process's. `null`
   * (no rate) on the first request, and on the first after more than 20 s without one (two
   * refresh intervals, when they are longer): an average over that gap would not be recent.
   */
  readonly rates: OutboxRates;
}

/** What `GET api/dead-letters` answers. */
export interface DashboardDeadLetters {
  readonly parked: { readonly total: number; readonly rows: readonly ParkedRowView[] };
  /** One entry per configured queue; `error` when its dead-letter queue could not be read. */
  readonly queues: ReadonlyArray<
    QueueDeadLettersView | (Omit<QueueDeadLettersView, 'depth'> & { depth: null; error: string })
  >;
}

/** An answer: a status code and a JSON body, or the page. */
interface Reply {
  readonly status: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly page?: true | undefined;
}

type Mutation = () => Promise<DeadLetterWorkResult>;

/** The rates' sliding window. */
const RATE_WINDOW_MS = 10_000;

const JSON_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
};

/**
 * A small web dashboard of the outbox: pending rows, the oldest pending age, retrying and
 * parked rows per exchange, publish rates, parked rows and the dead letters of chosen consumer
 * queues, with replay and purge when enabled. A plain `node:http` request handler: one page
 * (inline CSS and JS) and the JSON API it calls, below `basePath`:
 *
 * - `GET /`: the page; `GET api/status`; `GET api/dead-letters`
 * - `POST api/parked/replay`, `api/parked/purge`: every parked row
 * - `POST api/parked/<id>/replay`, `api/parked/<id>/purge`: one parked row
 * - `POST api/queues/<queue>/replay`, `.../purge`: every dead letter of a configured queue
 * - `POST api/queues/<queue>/messages/<message id>/replay`, `.../purge`: one dead letter; also
 *   `api/queues/<queue>/messages/replay?id=<message id>` (and `purge`), for any id
 *
 * Read-only unless `allowReplay: true`. Changes must be POSTs from the page itself: they need the
 * `x-outboxkit-dashboard` header and are refused when the browser says they come from another
 * site, and it answers only requests addressed to `allowedHosts` (by default the loopback
 * names, and then only clients on this machine, whatever interface it listens on). It shows no connection URL, payload or header. It has no login of its own: listen
 * on the loopback interface, or put it behind the application's authentication.
 *
 * @example
 * const dashboard = new OutboxDashboard({ pool });
 * http.createServer(dashboard.handle).listen(8089, '127.0.0.1');
 * // on shutdown:
 * await dashboard.close();
 */
export class OutboxDashboard {
  /** Replay and purge are allowed; without, they are refused with 403 and the page offers no buttons. */
  readonly allowReplay: boolean;
  readonly #pool: PgQueryable;
  readonly #schema: string;
  readonly #parked: ParkedMessages;
  readonly #queues: ReadonlyMap<string, QueueDeadLetters>;
  readonly #basePath: string;
  readonly #allowedHosts: readonly string[];
  /** No host name given: only clients on this machine are served (see `remoteRefusal`). */
  readonly #loopbackOnly: boolean;
  readonly #trustForwardedHost: boolean;
  readonly #limit: number;
  readonly #refreshMs: number;
  readonly #logger: OutboxLogger;
  readonly #rates: RateTracker;

  constructor(options: OutboxDashboardOptions) {
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new ConfigurationError(
        'options',
        'OutboxDashboard takes an options object: { pool, ... }',
      );
    }
    rejectUnknownOptions(options, DASHBOARD_OPTION_NAMES, {
      owner: 'OutboxDashboard',
      renames: RENAMED_OPTIONS.dashboard,
    });
    if (typeof options?.pool?.query !== 'function') {
      throw new ConfigurationError('pool', 'must be a pg Pool or client on the outbox database');
    }
    this.#pool = options.pool;
    this.#schema = outboxTables(options.schema).schemaName;
    this.allowReplay = booleanOption('allowReplay', options.allowReplay, false);
    this.#limit = positiveInteger('listLimit', options.listLimit, 100);
    this.#refreshMs = durationMs('refreshIntervalMs', options.refreshIntervalMs, 2000);
    // A baseline at most two windows old, or two refreshes when the page polls less often.
    this.#rates = new RateTracker(
      RATE_WINDOW_MS,
      Math.max(2 * RATE_WINDOW_MS, 2 * this.#refreshMs),
    );
    this.#basePath = basePathOf(options.basePath ?? '/');
    // Any host would let a foreign domain resolved to this machine (DNS rebinding) in.
    const extraHosts = stringList('allowedHosts', options.allowedHosts, []);
    checkAllowedHostNames('allowedHosts', extraHosts);
    // Besides the loopback names, as the Nest module's and the CLI's allowed hosts are.
    this.#allowedHosts = [
      ...new Set([...LOOPBACK_HOSTS, ...extraHosts.map((h) => h.toLowerCase())]),
    ];
    this.#loopbackOnly = extraHosts.length === 0;
    this.#trustForwardedHost = booleanOption(
      'trustForwardedHost',
      options.trustForwardedHost,
      false,
    );
    this.#logger = resolveLogger(options.logger, () => silentLogger);
    this.#parked = new ParkedMessages({ pool: this.#pool, schema: this.#schema });
    const queues = stringList('queues', options.queues, []);
    if (queues.length > 0 && options.amqpUrl === undefined) {
      throw new ConfigurationError('amqpUrl', 'is needed to show the dead letters of `queues`');
    }
    const amqpUrl = queues.length > 0 ? amqpUrlList(options.amqpUrl) : [];
    this.#queues = new Map(
      queues.map((q) => [
        q,
        new QueueDeadLetters(amqpUrl, q, this.#limit, undefined, options.amqpTls),
      ]),
    );
    // Built now, so that an install without the page's script fails at start, not on a visit.
    dashboardPage();
  }

  /**
   * Answers one request; pass it to `http.createServer`. `path` is the request's path below
   * the mount point (such as `api/status`) when a framework already matched the mount point;
   * by default it is `req.url` below `basePath`. Never rejects: failures are answered with 500.
   */
  readonly handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    path?: string,
  ): Promise<void> => {
    let reply: Reply;
    try {
      reply = await this.#route(req, path ?? this.#pathOf(req.url ?? '/'));
    } catch (error) {
      reply = this.#failure(error);
    }
    if (res.headersSent) return;
    if (reply.page) {
      const page = dashboardPage();
      res.writeHead(reply.status, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': page.csp,
        'x-frame-options': 'DENY',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(req.method === 'HEAD' ? undefined : page.html);
      return;
    }
    res.writeHead(reply.status, { ...JSON_HEADERS, ...reply.headers });
    res.end(req.method === 'HEAD' ? undefined : JSON.stringify(reply.body));
  };

  /** Pending, oldest age, retrying and parked per exchange, and the rates. */
  async status(): Promise<DashboardStatus> {
    const [status, activity] = await Promise.all([
      outboxStatus(this.#pool, { schema: this.#schema }),
      readOutboxActivity(this.#pool, this.#schema),
    ]);
    return {
      allowReplay: this.allowReplay,
      refreshIntervalMs: this.#refreshMs,
      status,
      rates: this.#rates.observe(performance.now(), activity),
    };
  }

  /** The first parked rows with their total, and each configured queue's dead letters. */
  async deadLetters(): Promise<DashboardDeadLetters> {
    const [total, rows, queues] = await Promise.all([
      this.#parked.count(),
      this.#parked.list({}, { limit: this.#limit }),
      Promise.all(
        [...this.#queues.values()].map((q) =>
          q.view().catch((error: unknown) => ({
            queue: q.queue,
            deadLetterQueue: deadLetterQueueName(q.queue),
            depth: null,
            messages: [],
            error: errorMessage(error),
          })),
        ),
      ),
    ]);
    return { parked: { total, rows: rows.map(parkedRowView) }, queues };
  }

  /** Closes the broker connections of the dead-letter queues; the `db` pool is the caller's. */
  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }

  #pathOf(url: string): string | undefined {
    const pathname = url.split('?')[0]!;
    if (`${pathname}/` === this.#basePath) return '';
    return pathname.startsWith(this.#basePath) ? pathname.slice(this.#basePath.length) : undefined;
  }

  async #route(req: IncomingMessage, path: string | undefined): Promise<Reply> {
    const refused =
      hostRefusal(req, this.#allowedHosts, undefined, this.#trustForwardedHost) ??
      (this.#loopbackOnly ? remoteRefusal(req) : undefined);
    if (refused) return { status: 403, body: { error: refused } };
    if (path === undefined) return notFound();
    const segments = path.replace(/^\/+/, '').split('/').map(decodeSegment);
    if (segments.some((s) => s === undefined)) return { status: 400, body: { error: 'bad path' } };
    const [first, ...rest] = segments as string[];
    if ((first === '' || first === 'index.html') && rest.length === 0) {
      const reply = await read(req, async () => undefined);
      return reply.status === 200 ? { ...reply, page: true } : reply;
    }
    if (first !== 'api') return notFound();
    const route = rest.join('/');
    if (route === 'status') return read(req, () => this.status());
    if (route === 'dead-letters') return read(req, () => this.deadLetters());
    if (rest[0] === 'queues' && rest[1] !== undefined && !this.#queues.has(rest[1])) {
      return { status: 404, body: { error: `queue ${JSON.stringify(rest[1])} is not shown here` } };
    }
    const messageId = new URLSearchParams((req.url ?? '').split('?')[1] ?? '').get('id');
    const mutation = this.#mutationOf(rest, messageId);
    return mutation ? this.#mutate(req, mutation) : notFound();
  }

  /**
   * The change a POST path asks for, or `undefined` when the path names none. `messageId`: the
   * `id` of the query, for `api/queues/<queue>/messages/<verb>?id=...`, the form the page uses:
   * a browser resolves an id of `.` or `..` in the path as a step up, which made a click on one
   * dead letter's Purge purge its whole queue.
   */
  #mutationOf(rest: readonly string[], messageId: string | null): Mutation | undefined {
    const [kind, a, b, c, d, ...more] = rest;
    if (more.length > 0) return undefined;
    const verb = (v: string | undefined) => (v === 'replay' || v === 'purge' ? v : undefined);
    if (kind === 'parked' && b === undefined && verb(a)) {
      return verb(a) === 'replay' ? () => this.#parked.replay({}) : () => this.#parked.purge({});
    }
    if (kind === 'parked' && a !== undefined && verb(b) && c === undefined) {
      return verb(b) === 'replay'
        ? () => one(() => this.#parked.replayOne(a))
        : () => one(() => this.#parked.purgeOne(a));
    }
    if (kind !== 'queues' || a === undefined) return undefined;
    const queue = this.#queues.get(a)!;
    if (verb(b) && c === undefined) {
      return verb(b) === 'replay' ? () => queue.replayAll() : () => queue.purgeAll();
    }
    const [target, action] =
      b === 'messages' && verb(c) && d === undefined && messageId !== null
        ? [messageId, verb(c)]
        : [c, b === 'messages' ? verb(d) : undefined];
    if (target !== undefined && action !== undefined) {
      return action === 'replay'
        ? () => one(() => queue.replayOne(target))
        : () => one(() => queue.purgeOne(target));
    }
    return undefined;
  }

  async #mutate(req: IncomingMessage, mutation: Mutation): Promise<Reply> {
    if (req.method !== 'POST') {
      return { status: 405, body: { error: 'use POST' }, headers: { allow: 'POST' } };
    }
    // Read-only first: a setting, the same for every caller, so it says the real reason.
    if (!this.allowReplay) {
      return {
        status: 403,
        body: {
          error:
            'the dashboard is read-only: start it with `allowReplay: true` (CLI: --allow-replay) to replay or purge',
        },
      };
    }
    const crossSite = crossSiteRefusal(req, this.#trustForwardedHost);
    if (crossSite) return { status: 403, body: { error: crossSite } };
    return { status: 200, body: await mutation() };
  }

  #failure(error: unknown): Reply {
    // No such parked row or dead letter, or the configured queue has no dead-letter queue.
    if (
      error instanceof DeadLetterNotFoundError ||
      (error instanceof OutboxkitError && error.code === 'dead-letter-queue-not-found')
    ) {
      return { status: 404, body: { error: error.message } };
    }
    if (error instanceof ConfigurationError) return { status: 400, body: { error: error.message } };
    // Another reader has the dead-letter queue: a moment later it will not.
    if (error instanceof OutboxkitError && error.code === 'dead-letter-queue-busy') {
      return { status: 503, body: { error: error.message }, headers: { 'retry-after': '1' } };
    }
    const message = errorMessage(error);
    this.#logger.warn('dashboard request failed', { error: message });
    return { status: 500, body: { error: message } };
  }
}

async function read(req: IncomingMessage, work: () => Promise<unknown>): Promise<Reply> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return { status: 405, body: { error: 'use GET' }, headers: { allow: 'GET, HEAD' } };
  }
  return { status: 200, body: await work() };
}

async function one(work: () => Promise<void>): Promise<DeadLetterWorkResult> {
  await work();
  return { done: 1, failed: [] };
}

function notFound(): Reply {
  return { status: 404, body: { error: 'not found' } };
}

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

/** `/outbox` and `outbox/` become `/outbox/`: the page's relative links need the slash. */
function basePathOf(path: string): string {
  if (typeof path !== 'string' || /[?#]/.test(path)) {
    throw new ConfigurationError('basePath', `must be a URL path such as /outbox/, got ${path}`);
  }
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '/' : `/${trimmed}/`;
}
