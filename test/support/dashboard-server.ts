import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OutboxDashboardOptions } from '../../src/dashboard/dashboard-options.js';
import { OutboxDashboard } from '../../src/dashboard/outbox-dashboard.js';
import { DASHBOARD_REQUEST_HEADER } from '../../src/dashboard/request-guard.js';
import type { OutboxMessage } from '../../src/writer/outbox-message.js';
import { parkOutboxRows } from './park-outbox-rows.js';
import { writeMessages } from './relay-fixture.js';
import type { TestDatabase } from './test-database.js';

/** A dashboard served on a free port of 127.0.0.1. */
export interface DashboardServer {
  readonly dashboard: OutboxDashboard;
  /** The page's URL, ending with a slash. */
  readonly url: string;
  close(): Promise<void>;
}

export async function serveDashboard(options: OutboxDashboardOptions): Promise<DashboardServer> {
  const dashboard = new OutboxDashboard(options);
  const server = createServer(dashboard.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = options.basePath ? `/${options.basePath.replace(/^\/+|\/+$/g, '')}/` : '/';
  return {
    dashboard,
    url: `http://127.0.0.1:${port}${base.replace('//', '/')}`,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await dashboard.close();
    },
  };
}

/** A POST as the dashboard page sends it. */
export function pagePost(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { [DASHBOARD_REQUEST_HEADER]: '1', ...headers } });
}

/**
 * The status code of a GET with this `Host` header, as a page of a foreign domain pointed at
 * this machine (DNS rebinding) would send it; fetch cannot set `Host`.
 */
export function statusWithHost(
  url: string,
  host: string,
  headers: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { ...headers, host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The status code and body of a GET with this `Host` header (see `statusWithHost`). */
export function replyWithHost(
  url: string,
  host: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Writes messages and moves them to the parked table, as the relay does when it gives up. */
export async function parkMessages(
  t: TestDatabase,
  messages: readonly OutboxMessage[],
  reason = 'gave up after 10 attempts: boom',
): Promise<void> {
  await writeMessages(t, messages);
  await parkOutboxRows(t, reason, {
    messageIds: messages.map((m) => m.messageId),
    attempts: 10,
    lastError: 'boom',
  });
}

/** The outbox's counts per exchange, straight from the tables, as `outboxStatus` should see them. */
export async function countsInDatabase(t: TestDatabase) {
  const { rows } = await t.pool.query(
    `SELECT exchange,
            count(*) FILTER (WHERE src = 'outbox')::int AS pending,
            count(*) FILTER (WHERE src = 'outbox' AND attempts > 0)::int AS retrying,
            count(*) FILTER (WHERE src = 'parked')::int AS parked
     FROM (SELECT exchange, attempts, 'outbox' AS src FROM "${t.schema}".outbox
           UNION ALL SELECT exchange, attempts, 'parked' FROM "${t.schema}".outbox_parked) x
     GROUP BY exchange ORDER BY exchange`,
  );
  const exchanges = rows as {
    exchange: string;
    pending: number;
    retrying: number;
    parked: number;
  }[];
  const sum = (k: 'pending' | 'retrying' | 'parked') => exchanges.reduce((n, e) => n + e[k], 0);
  return {
    exchanges,
    total: { pending: sum('pending'), retrying: sum('retrying'), parked: sum('parked') },
  };
}
