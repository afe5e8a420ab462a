import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { OutboxDashboard } from '../dashboard/outbox-dashboard.js';
import { hostRefusal, isLoopbackAddress, LOOPBACK_HOSTS } from '../dashboard/request-guard.js';
import { createPool } from '../sql/create-pool.js';
import { consoleLogger } from '../util/logger.js';
import {
  AMQP_URL_OPTION,
  amqpUrlsOf,
  COMMON_OPTIONS,
  databaseUrlOf,
  parseFlags,
  printHelp,
  schemaOf,
} from './cli-args.js';
import { type CliCommand, EXIT_OK } from './cli-command.js';
import {
  AMQP_TLS_HELP,
  checkCliAmqpTls,
  cliDatabaseTlsConfig,
  DATABASE_TLS_HELP,
  tlsFilesOf,
} from './cli-tls.js';
import { UsageError } from './usage-error.js';

const HELP = `Usage: outboxkit dashboard [options]

Serves a web page with the outbox's backlog, the age of its oldest row, publish rates, parked
rows and, with --queue, consumers' dead letters, refreshed every 2 seconds, until SIGTERM or
SIGINT. It is read-only unless --allow-replay is given. It has no login: by default it listens
on 127.0.0.1 only, and answers only requests addressed to localhost. Whatever --host, it
answers only requests addressed to a loopback name, the --host address (with 0.0.0.0 or ::,
this machine's addresses) or an --allowed-host name, so a foreign domain pointed at this
machine (DNS rebinding) is refused.

Options:
  --port <n>            port to listen on (default: 8089; 0 for any free port)
  --host <address>      address to listen on (default: 127.0.0.1)
  --allow-replay        offer replay and purge of parked rows and dead letters
  --allowed-host <name> also answer requests addressed to this host name; repeat for several
                        (always answered: the loopback names and the --host address, or this
                        machine's addresses when --host is 0.0.0.0 or ::)
  --trust-forwarded-host
                        behind a reverse proxy that rewrites Host: take X-Forwarded-Host as
                        the page's own host when checking where a replay or purge came from
  --queue <name>        also show the dead letters of this consumer's queue ("<name>.dlq");
                        repeat for several queues (needs the RabbitMQ URL)
  --database-url <url>  Postgres URL (default: $DATABASE_URL)
  --amqp-url <url>      RabbitMQ URL; repeat it or separate with commas for a cluster's nodes, for --queue (default: $AMQP_URL)
  --schema <name>       schema of the outboxkit tables (default: outboxkit)
  -h, --help            show this help
${DATABASE_TLS_HELP}${AMQP_TLS_HELP}`;

const OPTIONS = {
  ...COMMON_OPTIONS,
  ...AMQP_URL_OPTION,
  port: { type: 'string' },
  host: { type: 'string' },
  'allow-replay': { type: 'boolean' },
  'allowed-host': { type: 'string', multiple: true },
  'trust-forwarded-host': { type: 'boolean' },
  queue: { type: 'string', multiple: true },
} as const;

const DEFAULT_PORT = 8089;

/** `outboxkit dashboard`: the web dashboard as a process of its own. */
export const dashboardCommand: CliCommand = {
  name: 'dashboard',
  summary: 'serve a web page of the backlog, rates and dead letters (replay with --allow-replay)',
  help: HELP,
  async run(argv, env) {
    const { values } = parseFlags(argv, OPTIONS);
    if (values.help) return printHelp(HELP);
    const schema = schemaOf(values.schema);
    const databaseUrl = databaseUrlOf(values['database-url'], env);
    const queues = values.queue ?? [];
    if (queues.some((q) => q.length === 0)) throw new UsageError('--queue must name a queue');
    const amqpUrl = queues.length > 0 ? amqpUrlsOf(values['amqp-url'], env) : undefined;
    const databaseTls = tlsFilesOf('database', values, env);
    const amqpTls = tlsFilesOf('amqp', values, env);
    if (amqpUrl !== undefined) checkCliAmqpTls(amqpUrl, amqpTls);
    const port = portOf(values.port);
    const host = values.host ?? '127.0.0.1';
    if (host.length === 0) throw new UsageError('--host must be an address such as 127.0.0.1');
    const extraHosts = values['allowed-host'] ?? [];
    if (extraHosts.some((h) => h.length === 0 || (/[\s/:]/.test(h) && !h.startsWith('[')))) {
      throw new UsageError('--allowed-host must be a host name such as outbox.example.com');
    }
    // A browser names in Host the host it was pointed at: a loopback name or an address of this
    // machine, which are always answered, or a name given. Any other name is a foreign domain
    // pointed here (DNS rebinding).
    const allowedHosts = [
      ...new Set([...defaultAllowedHosts(host), ...extraHosts.map((h) => h.toLowerCase())]),
    ];

    const logger = consoleLogger('warn');
    // Bounded: an unreachable database fails a page load instead of leaving it hanging.
    const pool = createPool(
      {
        connectionString: databaseUrl,
        max: 4,
        application_name: 'outboxkit-dashboard',
        ...cliDatabaseTlsConfig(databaseUrl, databaseTls),
      },
      logger,
    );
    const dashboard = new OutboxDashboard({
      pool,
      schema,
      allowReplay: values['allow-replay'] === true,
      queues,
      ...(amqpUrl !== undefined && { amqpUrl }),
      ...(amqpTls !== undefined && { amqpTls }),
      allowedHosts,
      trustForwardedHost: values['trust-forwarded-host'] === true,
      logger,
    });
    // The host check comes first here, so that a refusal names the flag instead of the option.
    const server = createServer((req, res) => {
      const refused = hostRefusal(
        req,
        allowedHosts,
        cliHowToAllow,
        values['trust-forwarded-host'] === true,
      );
      if (refused === undefined) return void dashboard.handle(req, res);
      res.writeHead(403, {
        'content-type': 'application/json; charset=utf-8',
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify({ error: refused }));
    });
    // Listen for signals before listening for requests, so an early Ctrl-C still stops cleanly.
    const stopSignal = nextStopSignal();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const address = server.address() as AddressInfo;
      const mode = values['allow-replay'] ? 'replay and purge enabled' : 'read-only';
      // `--host` may be a name, or an IPv6 address in brackets.
      const loopback = host === 'localhost' || isLoopbackAddress(host.replace(/^\[(.*)\]$/, '$1'));
      if (values['allow-replay'] && !loopback) {
        // Allowed (behind a proxy that authenticates, say), but a first-hour probe did it bare.
        process.stderr.write(
          `outboxkit dashboard: --allow-replay on --host ${host}: the dashboard has no login, and whoever reaches this port from another machine can replay and purge messages; keep it behind your authentication, or listen on 127.0.0.1\n`,
        );
      }
      // The URL of the page only: no database or broker URL, which may hold passwords.
      process.stdout.write(
        `outboxkit dashboard of schema "${schema}" (${mode}) on http://${hostForUrl(host)}:${address.port}/\n`,
      );
      const signal = await stopSignal;
      process.stderr.write(`outboxkit dashboard: ${signal}, stopping\n`);
    } finally {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Browsers keep connections open between refreshes; close() alone would wait for them.
        server.closeAllConnections();
      });
      await dashboard.close();
      await pool.end().catch(() => {});
    }
    return EXIT_OK;
  },
};

function portOf(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PORT;
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n > 65_535) {
    throw new UsageError(`--port must be a port number (0 to 65535), got ${JSON.stringify(value)}`);
  }
  return n;
}

/**
 * The host names a page of this dashboard is reached by without a name of its own: the
 * loopback names, and the address it listens on, or every address of this machine when it
 * listens on all of them.
 */
function defaultAllowedHosts(host: string): string[] {
  const names = new Set([...LOOPBACK_HOSTS, hostForUrl(host)]);
  if (host === '0.0.0.0' || host === '::' || host === '[::]') {
    for (const address of Object.values(networkInterfaces()).flat()) {
      if (address) names.add(hostForUrl(address.address));
    }
  }
  return [...names];
}

/** How to allow a host name, in the terms of this command. */
function cliHowToAllow(name: string): string {
  return `start the dashboard with --allowed-host ${name} (repeat the flag for several names)`;
}

/** An address as it appears in a URL and a `Host` header: IPv6 in brackets. */
function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

/** Resolves with the first SIGTERM or SIGINT; a second one exits at once. */
function nextStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(130);
      received = true;
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
