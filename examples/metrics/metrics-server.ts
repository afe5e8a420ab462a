import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CollectMetricsOptions,
  collectMetrics,
  PROMETHEUS_CONTENT_TYPE,
  renderPrometheus,
} from '../../src/metrics/index.js';

/**
 * Serves `GET /metrics` for Prometheus with node:http and nothing else. Binds to localhost:
 * metrics name exchanges and consumers, which the world need not see. (In an application,
 * import from 'outboxkit/metrics' instead of the source path.)
 */
export async function serveMetrics(
  sources: CollectMetricsOptions,
  port = 9464,
  host = '127.0.0.1',
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    collectMetrics(sources).then(
      (samples) => {
        response.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
        response.end(renderPrometheus(samples));
      },
      // A scrape that fails says so with a 500; the details go to your logs, not the scraper.
      () => response.writeHead(500).end('metrics collection failed\n'),
    );
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const { port: bound } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${bound}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
