import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import {
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
  Injectable,
} from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import type { DashboardDeadLetters, DashboardStatus } from '../src/dashboard/outbox-dashboard.js';
import { DASHBOARD_REQUEST_HEADER } from '../src/dashboard/request-guard.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import {
  defineMessage,
  OutboxHandler,
  OutboxModule,
  OutboxService,
  PermanentError,
} from '../src/nestjs/index.js';
import { countsInDatabase, pagePost, statusWithHost } from './support/dashboard-server.js';
import { NestFixture } from './support/nestjs-fixture.js';
import { waitFor } from './support/wait-for.js';

const Invoice = defineMessage<{ n: number }>({ exchange: 'invoices', routingKey: 'invoice' });

/** Fails every message while `broken`, so they go to its dead-letter queue. */
@Injectable()
class InvoiceHandler {
  static broken = true;
  static handled: number[] = [];

  @OutboxHandler(Invoice, { name: 'dash.invoices', queueType: 'classic' })
  async handle(payload: { n: number }): Promise<void> {
    if (InvoiceHandler.broken) throw new PermanentError('no customer');
    InvoiceHandler.handled.push(payload.n);
  }
}

/** Lets requests with the right token through: the application's own authentication. */
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<{ headers: Record<string, string> }>();
    return req.headers['x-token'] === 'let-me-in';
  }
}

/** Lets every request through: stands for an application's authentication the test passes. */
class SignedInGuard implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

/**
 * The status code of a POST as the dashboard page sends it, to a `Host` and from an `Origin`
 * of the test's choosing: what a page of a foreign domain pointed at this machine (DNS
 * rebinding) sends, which fetch cannot.
 */
function postWithHost(url: string, host: string, origin: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { host, origin, [DASHBOARD_REQUEST_HEADER]: '1' } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function urlOf(app: INestApplication): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return (await app.getUrl()).replace('[::1]', '127.0.0.1');
}

describe('nestjs: the dashboard controller', () => {
  let f: NestFixture;
  before(async () => {
    f = await NestFixture.open('ndash');
  });
  after(() => f.close());

  it('serves the page and API under its path, lists the handlers’ dead letters and replays one', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot({
          ...f.options(),
          dashboard: { path: 'ops/outbox', allowReplay: true, guards: [SignedInGuard] },
        }),
      ],
      providers: [InvoiceHandler],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await f.init(app);
    const base = `${await urlOf(app)}/ops/outbox/`;
    const outbox = app.get(OutboxService);
    const queue = f.name('dash.invoices');

    const page = await fetch(base);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
    assert.match(await page.text(), /<title>outboxkit dashboard<\/title>/);
    assert.equal((await fetch(base.replace(/\/$/, ''))).status, 200);

    await f.t.db.transaction().execute((trx) => outbox.addMany(trx, Invoice, [{ n: 1 }, { n: 2 }]));
    await waitFor(
      'two dead letters',
      async () => (await f.depth(deadLetterQueueName(queue))) === 2,
    );

    const status = (await (await fetch(`${base}api/status`)).json()) as DashboardStatus;
    assert.equal(status.allowReplay, true);
    assert.equal(status.status.schema, f.t.schema);
    const { oldestPendingAgeSeconds: _, scheduled, ...total } = status.status.total;
    assert.deepEqual(total, (await countsInDatabase(f.t)).total);
    assert.equal(scheduled, 0);

    // By default, the dead letters of this application's handlers, by their prefixed names.
    const dead = (await (await fetch(`${base}api/dead-letters`)).json()) as DashboardDeadLetters;
    assert.deepEqual(
      dead.queues.map((q) => [q.queue, q.depth]),
      [[queue, 2]],
    );
    const [first] = dead.queues[0]!.messages;
    assert.equal(first!.reason, 'permanent-error');

    InvoiceHandler.broken = false;
    const q = encodeURIComponent(queue);
    const refused = await fetch(`${base}api/queues/${q}/replay`, { method: 'POST' });
    assert.equal(refused.status, 403, 'the custom header is required under Nest too');
    const replay = await pagePost(
      `${base}api/queues/${q}/messages/${encodeURIComponent(first!.messageId!)}/replay`,
    );
    assert.equal(replay.status, 200, await replay.clone().text());
    await waitFor('the replayed message handled', () => InvoiceHandler.handled.length === 1);
    assert.equal(await f.depth(deadLetterQueueName(queue)), 1);
    await f.closeApp(app);
  });

  it('read-only by default, behind a global prefix and the application’s guard', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRootAsync({
          useFactory: () => f.options({ relay: false, consumers: false }),
          dashboard: { guards: [TokenGuard], allowedHosts: ['127.0.0.1'] },
        }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    app.setGlobalPrefix('internal');
    await f.init(app);
    const base = `${await urlOf(app)}/internal/outbox/dashboard/`;
    const token = { 'x-token': 'let-me-in' };

    assert.equal((await fetch(`${base}api/status`)).status, 403, 'the guard ran');
    // A foreign domain pointed at the application (DNS rebinding) names itself in Host.
    const rebound = await statusWithHost(`${base}api/status`, 'evil.example', token);
    assert.equal(rebound, 403, 'a request for a host not in allowedHosts was served');
    const res = await fetch(`${base}api/status`, { headers: token });
    assert.equal(res.status, 200);
    const status = (await res.json()) as DashboardStatus;
    assert.equal(status.allowReplay, false);
    const dead = (await (await fetch(`${base}api/dead-letters`, { headers: token })).json()) as {
      queues: unknown[];
    };
    assert.deepEqual(dead.queues, [], 'no handlers in this application');
    const replay = await pagePost(`${base}api/parked/replay`, token);
    assert.equal(replay.status, 403);
    assert.match(((await replay.json()) as { error: string }).error, /read-only/);
    await f.closeApp(app);
  });
  it('refuses to start with allowReplay and no guard, naming the option and the fix', async () => {
    for (const guards of [undefined, []]) {
      const building = Test.createTestingModule({
        imports: [
          OutboxModule.forRoot({
            ...f.options({ relay: false, consumers: false }),
            dashboard: { allowReplay: true, ...(guards && { guards }) },
          }),
        ],
      }).compile();
      await assert.rejects(building, (error: Error) => {
        assert.ok(error instanceof ConfigurationError, `${error.name}: ${error.message}`);
        assert.equal(error.option, 'dashboard.allowReplay');
        assert.match(error.message, /dashboard\.guards/);
        return true;
      });
    }
  });

  it('answers only loopback names and the hosts the application names, by default', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot({
          ...f.options({ relay: false, consumers: false }),
          dashboard: { allowReplay: true, guards: [SignedInGuard] },
        }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await f.init(app);
    const base = `${await urlOf(app)}/outbox/dashboard/`;
    const port = new URL(base).port;
    const rebind = `rebind.attacker.example:${port}`;

    // A page of a foreign domain resolved to 127.0.0.1: same-origin to the browser.
    const purge = await postWithHost(`${base}api/parked/purge`, rebind, `http://${rebind}`);
    assert.equal(purge, 403, 'a DNS-rebinding page purged the parked rows');
    assert.equal(await statusWithHost(`${base}api/status`, rebind), 403);
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) {
      assert.equal(await statusWithHost(`${base}api/status`, host), 200, host);
    }
    const own = await postWithHost(
      `${base}api/parked/purge`,
      `127.0.0.1:${port}`,
      `http://127.0.0.1:${port}`,
    );
    assert.equal(own, 200, 'the page on its own host could not purge');
    await f.closeApp(app);

    // Hosts the application names are added to the loopback ones.
    const named = await Test.createTestingModule({
      imports: [
        OutboxModule.forRoot({
          ...f.options({ relay: false, consumers: false }),
          dashboard: { guards: [SignedInGuard], allowedHosts: ['Outbox.Example.com'] },
        }),
      ],
    }).compile();
    const app2 = named.createNestApplication({ logger: false });
    await f.init(app2);
    const base2 = `${await urlOf(app2)}/outbox/dashboard/`;
    assert.equal(await statusWithHost(`${base2}api/status`, 'outbox.example.com'), 200);
    assert.equal(await statusWithHost(`${base2}api/status`, 'localhost'), 200);
    assert.equal(await statusWithHost(`${base2}api/status`, 'rebind.attacker.example'), 403);
    await f.closeApp(app2);
  });
});
