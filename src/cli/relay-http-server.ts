import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectMetrics, type RelayMetricsSource } from '../metrics/collect-metrics.js';
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from '../metrics/render-prometheus.js';
import type { RelayDatabaseProblem } from '../relay/database-health.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { errorMessage, type OutboxLogger } from '../util/logger.js';

/** What the endpoints read from the relay: an `OutboxRelay` fits. */
export interface RelayHealthSource extends RelayMetricsSource {
  readonly isRunning: boolean;
  readonly isConnected: boolean;
  readonly databaseProblem: RelayDatabaseProblem | undefined;
}

export interface RelayHttpServerOptions {
  readonly relay: RelayHealthSource;
  readonly port: number;
  readonly host: string;
  /** The outbox database, for the outbox gauges of `/metrics`. */
  readonly pool?: PgQueryable;
  readonly schema: string;
  readonly logger: OutboxLogger;
}

/** A listening server; `close()` ends it and its connections. */
export interface RelayHttpServer {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The relay process's HTTP endpoints, for a process manager or Kubernetes:
 * - `GET /health`: 200 while the relay runs and can publish (connected to RabbitMQ and not
 *   blocked by an alarm, and its last claim reached the database), else 503; a JSON body says
 *   which. For readiness probes.
 * - `GET /live`: 200 while the relay runs, even while RabbitMQ is away (it reconnects by
 *   itself: restarting the process would not help), 503 once it stops. For liveness probes.
 * - `GET /metrics`: the Prometheus text of the relay's counters and, when the database
 *   answers within 3 s, the outbox gauges.
 */
export async function serveRelayHttp(options: RelayHttpServerOptions): Promise<RelayHttpServer> {
  const { relay, pool, schema, logger } = options;
  const server: Server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://relay').pathname;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/health' || path === '/live') {
      const running = relay.isRunning;
      const connected = relay.isConnected;
      const problem = relay.databaseProblem;
      const database = problem === undefined ? 'ok' : problem.kind;
      const ok = path === '/live' ? running : running && connected && problem === undefined;
      const body = JSON.stringify({
        status: ok ? 'ok' : 'unavailable',
        running,
        connected,
        database,
        ...(problem && { error: errorMessage(problem.error) }),
      });
      response
        .writeHead(ok ? 200 : 503, {
          'content-type': 'application/json',
          'cache-control': 'no-store',
        })
        .end(`${body}\n`);
      return;
    }
    if (path === '/metrics') {
      metricsText(relay, pool, schema, logger).then(
        (text) => response.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(text),
        (error: unknown) => {
          logger.warn('metrics could not be collected', { error: errorMessage(error) });
          response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics failed\n');
        },
      );
      return;
    }
    response
      .writeHead(404, { 'content-type': 'text/plain' })
      .end('not found: try /health, /live or /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The relay's counters always; the outbox gauges too when the database answers in time. */
function metricsText(
  relay: RelayMetricsSource,
  pool: PgQueryable | undefined,
  schema: string,
  logger: OutboxLogger,
): Promise<string> {
  return collectMetrics({ relay, ...(pool && { pool, schema, logger }) }).then(renderPrometheus);
}
