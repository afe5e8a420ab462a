import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from 'amqplib';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { PermanentError } from '../src/consumer/permanent-error.js';
import type { DashboardDeadLetters, DashboardStatus } from '../src/dashboard/outbox-dashboard.js';
import { RateTracker } from '../src/dashboard/rate-tracker.js';
import {
  crossSiteRefusal,
  hostNameOf,
  hostRefusal,
  LOOPBACK_HOSTS,
  remoteRefusal,
} from '../src/dashboard/request-guard.js';
import { outboxStatus } from '../src/status/outbox-status.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import {
  countsInDatabase,
  type DashboardServer,
  pagePost,
  parkMessages,
  replyWithHost,
  serveDashboard,
  statusWithHost,
} from './support/dashboard-server.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as T;
}

describe('dashboard: the HTTP API', () => {
  let f: ConsumerFixture;
  let readOnly: DashboardServer;
  let enabled: DashboardServer;
  let broken = true;
  let queue: string;

  before(async () => {
    f = await ConsumerFixture.open('dash');
    queue = f.name('billing');
    await f.host([
      f.definition(
        'billing',
        async (payload, ctx) => {
          if (broken) throw new PermanentError('customer missing');
          await f.recordEffect(payload, ctx);
        },
        { routingKeys: ['order.placed'] },
      ),
    ]);
    const common = { pool: f.t.pool, schema: f.t.schema, amqpUrl: AMQP_URL, queues: [queue] };
    readOnly = await serveDashboard(common);
    enabled = await serveDashboard({ ...common, allowReplay: true, basePath: '/ops/outbox' });
  });
  after(async () => {
    await readOnly?.close();
    await enabled?.close();
    await f.close();
  });

  it('reports the counts the database holds, per exchange and in total', async () => {
    const { t } = f;
    // Pending rows on two exchanges, two of them retrying, and parked rows: no relay runs.
    await writeMessages(t, [
      { exchange: 'ex.a', routingKey: 'r', payload: 1, messageId: 'a-1' },
      { exchange: 'ex.a', routingKey: 'r', payload: 2, messageId: 'a-2' },
      { exchange: 'ex.b', routingKey: 'r', payload: 3, messageId: 'b-1' },
    ]);
    await t.pool.query(
      `UPDATE "${t.schema}".outbox SET attempts = 2 WHERE message_id IN ('a-2', 'b-1')`,
    );
    await parkMessages(t, [
      { exchange: 'ex.b', routingKey: 'r', payload: 4, messageId: 'parked-1' },
      { exchange: 'ex.c', routingKey: 'r', payload: 5, messageId: 'parked-2' },
      { exchange: 'ex.c', routingKey: 'r', payload: 6, messageId: '<b>parked-3</b>' },
    ]);

    const api = await getJson<DashboardStatus>(`${readOnly.url}api/status`);
    const db = await countsInDatabase(t);
    assert.equal(api.allowReplay, false);
    assert.deepEqual(
      api.status.exchanges.map(({ exchange, pending, retrying, parked }) => ({
        exchange,
        pending,
        retrying,
        parked,
      })),
      db.exchanges,
    );
    assert.deepEqual(db.total, { pending: 3, retrying: 2, parked: 3 });
    const { oldestPendingAgeSeconds, scheduled, ...total } = api.status.total;
    assert.deepEqual(total, db.total);
    assert.equal(scheduled, 0);
    assert.ok((oldestPendingAgeSeconds ?? -1) >= 0);
    // The same figures as `outboxkit status`, bar the age, which grows between the two reads.
    const direct = await outboxStatus(t.pool, { schema: t.schema });
    assert.deepEqual(
      api.status.exchanges.map((e) => e.exchange),
      direct.exchanges.map((e) => e.exchange),
    );

    const dead = await getJson<DashboardDeadLetters>(`${readOnly.url}api/dead-letters`);
    const { rows: parkedRows } = await t.pool.query(
      `SELECT id::text AS id, message_id FROM "${t.schema}".outbox_parked ORDER BY id`,
    );
    assert.equal(dead.parked.total, parkedRows.length);
    assert.deepEqual(
      dead.parked.rows.map((r) => [r.id, r.messageId]),
      parkedRows.map((r) => [r.id, r.message_id]),
    );
    // Neither payloads nor headers leave the database through the dashboard.
    for (const row of dead.parked.rows) {
      assert.equal('payload' in row, false);
      assert.equal('headers' in row, false);
    }
  });

  it('lists a configured queue’s dead letters, and only configured queues', async () => {
    await f.publish('order.placed', { orderId: 'o-1' }, { messageId: 'dl-1' });
    await f.publish('order.placed', { orderId: 'o-2' }, { messageId: 'dl-2' });
    await f.waitForDepth(deadLetterQueueName(queue), 2);
    const dead = await getJson<DashboardDeadLetters>(`${readOnly.url}api/dead-letters`);
    assert.equal(dead.queues.length, 1);
    const q = dead.queues[0]!;
    assert.equal(q.queue, queue);
    assert.equal(q.deadLetterQueue, deadLetterQueueName(queue));
    assert.equal(q.depth, 2);
    assert.deepEqual(q.messages.map((m) => m.messageId).sort(), ['dl-1', 'dl-2']);
    assert.equal(q.messages[0]!.reason, 'permanent-error');
    assert.equal('headers' in q.messages[0]!, false);
    // Reading handed them back.
    assert.equal(await f.depth(deadLetterQueueName(queue)), 2);

    const other = await pagePost(
      `${enabled.url}api/queues/${encodeURIComponent('x.other')}/replay`,
    );
    assert.equal(other.status, 404);
  });

  it('answers 404, not 500, for a configured queue whose dead-letter queue does not exist', async () => {
    const missing = f.name('never-declared');
    const dlq = deadLetterQueueName(missing);
    const server = await serveDashboard({
      pool: f.t.pool,
      schema: f.t.schema,
      amqpUrl: AMQP_URL,
      queues: [missing],
      allowReplay: true,
    });
    try {
      const q = encodeURIComponent(missing);
      for (const path of [
        `api/queues/${q}/replay`,
        `api/queues/${q}/purge`,
        `api/queues/${q}/messages/m-1/replay`,
        `api/queues/${q}/messages/m-1/purge`,
      ]) {
        const res = await pagePost(`${server.url}${path}`);
        const { error } = (await res.json()) as { error: string };
        assert.equal(res.status, 404, `${path}: ${error}`);
        assert.match(error, new RegExp(`Queue "${dlq.replace(/\./g, '\\.')}" does not exist`));
      }
      // The list shows the queue as unavailable, with the same reason.
      const dead = await getJson<DashboardDeadLetters>(`${server.url}api/dead-letters`);
      assert.match((dead.queues[0] as { error?: string }).error ?? '', /does not exist/);
    } finally {
      await server.close();
    }
  });

  it('answers 503 with Retry-After, not 500, while another reader has the dead-letter queue', async () => {
    const server = await serveDashboard({
      pool: f.t.pool,
      schema: f.t.schema,
      amqpUrl: AMQP_URL,
      queues: [queue],
      allowReplay: true,
    });
    // Another reader's turn, as a dashboard or CLI in another process holds it.
    const other = await connect(AMQP_URL);
    try {
      const holder = await other.createChannel();
      await holder.prefetch(1);
      await holder.consume(deadLetterQueueName(queue), () => {}, { exclusive: true });
      const res = await pagePost(`${server.url}api/queues/${encodeURIComponent(queue)}/replay`);
      const { error } = (await res.json()) as { error: string };
      assert.equal(res.status, 503, error);
      assert.equal(res.headers.get('retry-after'), '1');
      assert.match(error, /was being read by another reader/);
    } finally {
      await other.close();
      await server.close();
    }
  });

  it('refuses replay and purge when read-only', async () => {
    const [row] = await f.t.pool
      .query(`SELECT id::text AS id FROM "${f.t.schema}".outbox_parked ORDER BY id LIMIT 1`)
      .then((r) => r.rows as { id: string }[]);
    for (const path of [
      `api/parked/${row!.id}/replay`,
      'api/parked/replay',
      `api/parked/${row!.id}/purge`,
      `api/queues/${encodeURIComponent(queue)}/replay`,
      `api/queues/${encodeURIComponent(queue)}/messages/dl-1/replay`,
    ]) {
      const res = await pagePost(`${readOnly.url}${path}`);
      assert.equal(res.status, 403, path);
      assert.match(
        ((await res.json()) as { error: string }).error,
        /read-only: start it with `allowReplay: true` \(CLI: --allow-replay\)/,
      );
    }
    // Not from the page either: read-only is still the reason given, the one that applies.
    const bare = await fetch(`${readOnly.url}api/parked/replay`, { method: 'POST' });
    assert.equal(bare.status, 403);
    assert.match(((await bare.json()) as { error: string }).error, /read-only/);
    assert.equal(await f.t.count('outbox_parked'), 3);
    assert.equal(await f.depth(deadLetterQueueName(queue)), 2);
  });

  it('refuses changes that do not come from the page itself', async () => {
    const [row] = await f.t.pool
      .query(`SELECT id::text AS id FROM "${f.t.schema}".outbox_parked ORDER BY id LIMIT 1`)
      .then((r) => r.rows as { id: string }[]);
    const url = `${enabled.url}api/parked/${row!.id}/replay`;

    const plain = await fetch(url, { method: 'POST' });
    assert.equal(plain.status, 403);
    assert.match(((await plain.json()) as { error: string }).error, /x-outboxkit-dashboard/);
    const foreign = await pagePost(url, { origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    assert.match(((await foreign.json()) as { error: string }).error, /evil\.example/);
    const crossSite = await pagePost(url, { 'sec-fetch-site': 'cross-site' });
    assert.equal(crossSite.status, 403);
    const sameSite = await pagePost(url, { 'sec-fetch-site': 'same-site' });
    assert.equal(sameSite.status, 403);
    // A link or an image cannot do it either: changes are POSTs.
    const get = await fetch(url);
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal(await f.t.count('outbox_parked'), 3, 'nothing was replayed');
  });

  it('replays a parked row back into the outbox with its id and message id, and purges', async () => {
    const { t } = f;
    const { rows } = await t.pool.query(
      `SELECT id::text AS id FROM "${t.schema}".outbox_parked WHERE message_id = 'parked-1'`,
    );
    const id = (rows[0] as { id: string }).id;
    const origin = new URL(enabled.url).origin;
    const res = await pagePost(`${enabled.url}api/parked/${id}/replay`, {
      origin,
      'sec-fetch-site': 'same-origin',
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { done: 1, failed: [] });
    const back = await t.pool.query(
      `SELECT id::text AS id, message_id, attempts FROM "${t.schema}".outbox WHERE id = $1`,
      [id],
    );
    assert.deepEqual(back.rows, [{ id, message_id: 'parked-1', attempts: 0 }]);
    assert.equal(await t.count('outbox_parked'), 2);

    const again = await pagePost(`${enabled.url}api/parked/${id}/replay`);
    assert.equal(again.status, 404);
    const bad = await pagePost(`${enabled.url}api/parked/not-a-number/replay`);
    assert.equal(bad.status, 400);

    const status = await getJson<DashboardStatus>(`${enabled.url}api/status`);
    assert.deepEqual(
      { pending: status.status.total.pending, parked: status.status.total.parked },
      { pending: 4, parked: 2 },
    );

    const purged = await pagePost(`${enabled.url}api/parked/purge`);
    assert.deepEqual(await purged.json(), { done: 2, failed: [] });
    assert.equal(await t.count('outbox_parked'), 0);
  });

  it('replays one dead letter of a queue, then purges the rest', async () => {
    broken = false;
    const dlq = deadLetterQueueName(queue);
    const q = encodeURIComponent(queue);
    const res = await pagePost(`${enabled.url}api/queues/${q}/messages/dl-1/replay`);
    assert.equal(res.status, 200, await res.clone().text());
    await waitFor('the replayed message to be handled', async () =>
      (await f.effects()).some((e) => e.key === 'dl-1'),
    );
    assert.equal(await f.depth(dlq), 1);
    const dead = await getJson<DashboardDeadLetters>(`${enabled.url}api/dead-letters`);
    assert.deepEqual(
      dead.queues[0]!.messages.map((m) => m.messageId),
      ['dl-2'],
    );
    const missing = await pagePost(`${enabled.url}api/queues/${q}/messages/nope/replay`);
    assert.equal(missing.status, 404);
    // An empty message id is a bad request, refused before the queue is read.
    const empty = await pagePost(`${enabled.url}api/queues/${q}/messages//purge`);
    assert.equal(empty.status, 400, await empty.clone().text());
    assert.equal(await f.depth(dlq), 1);
    const purged = await pagePost(`${enabled.url}api/queues/${q}/purge`);
    assert.deepEqual(await purged.json(), { done: 1, failed: [] });
    assert.equal(await f.depth(dlq), 0);
  });

  it('measures the publish rate from the database while a relay drains the outbox', async () => {
    const { t, broker } = f;
    await t.pool.query(`DELETE FROM "${t.schema}".outbox`);
    const exchange = await broker.exchange('rated');
    await broker.queue('rated-q', exchange, '#');
    // A first sample, so the rate has a baseline from before the relay ran.
    await getJson<DashboardStatus>(`${enabled.url}api/status`);
    await writeMessages(
      t,
      Array.from({ length: 200 }, (_, i) => ({ exchange, routingKey: 'r', payload: i })),
    );
    const relay = testRelay(t);
    await relay.start();
    try {
      await waitFor('the outbox to drain', async () => (await t.count('outbox')) === 0);
      // Postgres reports a backend's table statistics up to a second late.
      const status = await waitFor('a publish rate', async () => {
        const s = await getJson<DashboardStatus>(`${enabled.url}api/status`);
        return (s.rates.publishedPerSecond ?? 0) > 0 && (s.rates.writtenPerSecond ?? 0) > 0
          ? s
          : undefined;
      });
      assert.ok(status.rates.windowSeconds! > 0);
      assert.equal(status.status.total.pending, 0);
    } finally {
      await relay.stop();
    }
  });

  it('serves the page with a strict content security policy, and nothing outside its path', async () => {
    const page = await fetch(enabled.url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /^text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
    assert.match(page.headers.get('content-security-policy')!, /script-src 'sha256-/);
    const html = await page.text();
    assert.match(html, /<title>outboxkit dashboard<\/title>/);
    assert.doesNotMatch(html, /amqp:|postgres:/);
    // Without the trailing slash, the same page: its script finds the API either way.
    assert.equal((await fetch(enabled.url.replace(/\/$/, ''))).status, 200);
    assert.equal((await fetch(new URL('/elsewhere', enabled.url))).status, 404);
    assert.equal((await fetch(`${enabled.url}api/nothing`)).status, 404);
    const status = await getJson<DashboardStatus>(`${enabled.url}api/status`);
    assert.doesNotMatch(JSON.stringify(status), /amqp:|postgres:|guest/);
  });

  it('answers only to allowed host names when given some', async () => {
    const guarded = await serveDashboard({
      pool: f.t.pool,
      schema: f.t.schema,
      allowedHosts: ['Outbox.Example'],
    });
    try {
      // Besides the loopback names, as in Nest and the CLI: it replaced them (a probe).
      assert.equal((await fetch(`${guarded.url}api/status`)).status, 200);
      assert.equal(await statusWithHost(guarded.url, 'localhost:1234'), 200);
      assert.equal(await statusWithHost(`${guarded.url}api/status`, 'outbox.example'), 200);
      assert.equal(await statusWithHost(`${guarded.url}api/status`, 'evil.example'), 403);
    } finally {
      await guarded.close();
    }
  });

  it('behind a proxy it trusts, checks the forwarded host against the allowed names too', async () => {
    // The proxy rewrote Host to an allowed name, and a rebinding page's own name came only in
    // X-Forwarded-Host, which went unchecked: it read the dashboard and purged parked rows.
    const proxied = await serveDashboard({
      pool: f.t.pool,
      schema: f.t.schema,
      allowedHosts: ['app'],
      trustForwardedHost: true,
    });
    try {
      const status = `${proxied.url}api/status`;
      assert.equal(await statusWithHost(status, 'app', { 'x-forwarded-host': 'app' }), 200);
      assert.equal(await statusWithHost(status, 'app'), 200);
      assert.equal(
        await statusWithHost(status, 'app', { 'x-forwarded-host': 'evil.example' }),
        403,
      );
      assert.equal(
        await statusWithHost(status, 'app', { 'x-forwarded-host': 'evil.example, app' }),
        403,
      );
    } finally {
      await proxied.close();
    }
    // Not trusted, the header is not read at all.
    const untrusted = { headers: { host: 'app', 'x-forwarded-host': 'evil.example' } };
    assert.equal(hostRefusal(untrusted as unknown as IncomingMessage, ['app']), undefined);
  });
});

describe('dashboard: the outboxkit dashboard command', () => {
  const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  let child: ChildProcess | undefined;
  after(() => {
    child?.kill('SIGKILL');
  });

  it('prints its URL without credentials, serves, and stops on SIGINT with status 0', async () => {
    const f = await ConsumerFixture.open('dashcli');
    try {
      // A password the server ignores (trust authentication), to see that it is never printed.
      const url = new URL(DATABASE_URL);
      url.password = 'sekret-pw';
      child = spawn(
        process.execPath,
        [MAIN, 'dashboard', '--port', '0', '--schema', f.t.schema, '--database-url', url.href],
        { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AMQP_URL } },
      );
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (c: string) => {
        stdout += c;
      });
      child.stderr!.setEncoding('utf8').on('data', (c: string) => {
        stderr += c;
      });
      const exited = once(child, 'close');
      const page = await waitFor('the URL', () => /http:\/\/127\.0\.0\.1:\d+\//.exec(stdout)?.[0]);
      assert.match(stdout, /read-only/);
      const status = await getJson<DashboardStatus>(`${page}api/status`);
      assert.equal(status.allowReplay, false);
      assert.equal(status.status.schema, f.t.schema);
      assert.equal(await statusWithHost(`${page}api/status`, 'evil.example:80'), 403);
      child.kill('SIGINT');
      const [code] = await exited;
      assert.equal(code, 0, stderr);
      assert.doesNotMatch(stdout + stderr, /sekret/);
      child = undefined;
    } finally {
      await f.close();
    }
  });

  it('--allowed-host adds to the loopback names; a refusal names the flag; a blank one is a usage error', async () => {
    const f = await ConsumerFixture.open('dashhost');
    try {
      const args = [MAIN, 'dashboard', '--port', '0', '--schema', f.t.schema];
      const env = { ...process.env, DATABASE_URL };
      const blank = spawn(process.execPath, [...args, '--allowed-host', ''], { env });
      assert.equal((await once(blank, 'close'))[0], 2);
      child = spawn(process.execPath, [...args, '--allowed-host', 'ops.example.com'], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env,
      });
      let stdout = '';
      child.stdout!.setEncoding('utf8').on('data', (c: string) => {
        stdout += c;
      });
      const exited = once(child, 'close');
      const page = await waitFor('the URL', () => /http:\/\/127\.0\.0\.1:\d+\//.exec(stdout)?.[0]);
      assert.equal(await statusWithHost(`${page}api/status`, 'ops.example.com'), 200);
      assert.equal(await statusWithHost(`${page}api/status`, 'localhost'), 200);
      assert.equal(await statusWithHost(`${page}api/status`, '127.0.0.1'), 200);
      const refused = await replyWithHost(`${page}api/status`, 'evil.example:80');
      assert.equal(refused.status, 403);
      const { error } = JSON.parse(refused.body) as { error: string };
      // The CLI's own option, not the code's `allowedHosts`.
      assert.match(error, /--allowed-host evil\.example/);
      assert.doesNotMatch(error, /allowedHosts/);
      child.kill('SIGINT');
      assert.equal((await exited)[0], 0);
      child = undefined;
    } finally {
      await f.close();
    }
  });
});

describe('dashboard: pure logic', () => {
  const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

  it('refuses a change without the header, from another site or another origin', () => {
    const ok = { host: '127.0.0.1:8089', 'x-outboxkit-dashboard': '1' };
    assert.equal(crossSiteRefusal(request(ok)), undefined);
    assert.equal(
      crossSiteRefusal(
        request({ ...ok, origin: 'http://127.0.0.1:8089', 'sec-fetch-site': 'same-origin' }),
      ),
      undefined,
    );
    assert.match(crossSiteRefusal(request({ host: ok.host }))!, /header is missing/);
    assert.match(crossSiteRefusal(request({ ...ok, 'sec-fetch-site': 'cross-site' }))!, /cross/);
    assert.match(crossSiteRefusal(request({ ...ok, origin: 'http://127.0.0.1:9999' }))!, /origin/);
    assert.match(crossSiteRefusal(request({ ...ok, origin: 'null' }))!, /origin/);
  });

  it('takes X-Forwarded-Host as the page host only when told to trust it', () => {
    const ok = { host: 'app:3000', 'x-outboxkit-dashboard': '1' };
    // Behind a proxy that rewrites Host, the host the browser saw is the forwarded one.
    const proxied = {
      ...ok,
      'x-forwarded-host': 'ops.example.com',
      origin: 'https://ops.example.com',
    };
    assert.equal(crossSiteRefusal(request(proxied), true), undefined);
    // Untrusted, the header is anyone's to send: a foreign page allowed by a permissive CORS
    // policy names its own host in both, and is refused, with a hint for the proxied case.
    assert.match(crossSiteRefusal(request(proxied))!, /not this dashboard.*trustForwardedHost/);
    const forged = { ...ok, 'x-forwarded-host': 'evil.example', origin: 'https://evil.example' };
    assert.match(crossSiteRefusal(request(forged))!, /evil\.example/);
    // Trusted, a forwarded host must still match the origin.
    assert.match(
      crossSiteRefusal(request({ ...proxied, origin: 'https://evil.example' }), true)!,
      /origin/,
    );
  });

  it('matches host names without ports, IPv6 included', () => {
    assert.equal(hostNameOf('LocalHost:8089'), 'localhost');
    assert.equal(hostNameOf('[::1]:8089'), '[::1]');
    assert.equal(hostNameOf(undefined), undefined);
    assert.equal(hostRefusal(request({ host: '[::1]:1' }), LOOPBACK_HOSTS), undefined);
    assert.match(hostRefusal(request({ host: 'evil.example:8089' }), LOOPBACK_HOSTS)!, /evil/);
    assert.equal(hostRefusal(request({ host: 'evil.example' }), undefined), undefined);
  });

  it('with only the loopback names allowed, serves clients on this machine only', () => {
    // Host is the client's to write: an application listening on every interface (Nest's
    // default) served any client sending `Host: localhost` (a security probe).
    const from = (remoteAddress: string | undefined) =>
      ({ headers: { host: 'localhost' }, socket: { remoteAddress } }) as unknown as IncomingMessage;
    for (const local of ['127.0.0.1', '127.0.0.53', '::1', '::ffff:127.0.0.1', undefined]) {
      assert.equal(remoteRefusal(from(local)), undefined, String(local));
    }
    for (const remote of ['192.0.2.2', '::ffff:10.1.2.3', 'fd00::2']) {
      assert.match(remoteRefusal(from(remote))!, /not on this machine.*allowedHosts/);
    }
  });

  it('names allowedHosts, and no CLI flag, when refusing a host in code', () => {
    const refused = hostRefusal(request({ host: 'evil.example:8089' }), LOOPBACK_HOSTS)!;
    assert.match(refused, /allowedHosts/);
    assert.doesNotMatch(refused, /--allowed-host/);
  });

  it('computes rates over a sliding window and starts again after a statistics reset', () => {
    const rates = new RateTracker(10_000);
    const at = (written: number, published: number) => ({ written, published, parked: 0 });
    assert.equal(rates.observe(0, at(0, 0)).publishedPerSecond, null);
    assert.deepEqual(rates.observe(2000, at(100, 50)), {
      publishedPerSecond: 25,
      writtenPerSecond: 50,
      parkedPerSecond: 0,
      windowSeconds: 2,
    });
    // Past the window, the baseline moves up to the newest sample a full window old.
    rates.observe(12_000, at(300, 250));
    const later = rates.observe(14_000, at(300, 350));
    assert.equal(later.windowSeconds, 12);
    assert.equal(later.publishedPerSecond, 300 / 12);
    // A total going down is a reset of Postgres' statistics: no rate until two new samples.
    assert.equal(rates.observe(15_000, at(5, 5)).publishedPerSecond, null);
    assert.equal(rates.observe(16_000, at(15, 10)).publishedPerSecond, 5);
    assert.equal(rates.observe(17_000, null).publishedPerSecond, null);
  });

  it('gives no rate from a baseline older than twice the window, as after nobody polled', () => {
    const rates = new RateTracker(10_000);
    const at = (published: number) => ({ written: published, published, parked: 0 });
    rates.observe(0, at(0));
    assert.equal(rates.observe(2000, at(20)).windowSeconds, 2);
    // The page was closed for half a minute: an average over the gap is not a recent rate.
    assert.deepEqual(rates.observe(37_500, at(1000)), {
      publishedPerSecond: null,
      writtenPerSecond: null,
      parkedPerSecond: null,
      windowSeconds: null,
    });
    const next = rates.observe(39_500, at(1100));
    assert.equal(next.windowSeconds, 2);
    assert.equal(next.publishedPerSecond, 50);
    // A baseline of 12.5 s is kept; one of 22.5 s (with nothing younger a window old) is not.
    rates.observe(52_000, at(1200));
    assert.equal(rates.observe(64_500, at(1300)).windowSeconds, 12.5);
    assert.equal(rates.observe(87_000, at(1400)).windowSeconds, null);
    // A longer limit, for a page that polls less often than the window.
    const slow = new RateTracker(10_000, 60_000);
    slow.observe(0, at(0));
    assert.equal(slow.observe(30_000, at(300)).publishedPerSecond, 10);
  });
});
