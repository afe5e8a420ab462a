import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as amqp from 'amqplib';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { deadLetterQueueName } from '../src/consumer/consumer-topology.js';
import { CHROMIUM_ARGS, chromiumExecutable } from './support/chromium.js';
import {
  countsInDatabase,
  type DashboardServer,
  parkMessages,
  serveDashboard,
} from './support/dashboard-server.js';
import { AMQP_URL } from './support/env.js';
import { writeMessages } from './support/relay-fixture.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/** What the page shows, read from its DOM. */
async function shownCounts(page: Page) {
  const value = async (testid: string) =>
    Number(await page.getAttribute(`[data-testid="${testid}"]`, 'data-value'));
  const exchanges = await page.$$eval('tr[data-exchange]', (rows) =>
    rows.map((r) => ({
      exchange: r.getAttribute('data-exchange'),
      pending: Number(r.querySelector('[data-col="pending"]')!.textContent),
      retrying: Number(r.querySelector('[data-col="retrying"]')!.textContent),
      parked: Number(r.querySelector('[data-col="parked"]')!.textContent),
    })),
  );
  return {
    exchanges,
    total: {
      pending: await value('total-pending'),
      retrying: await value('total-retrying'),
      parked: await value('total-parked'),
    },
  };
}

describe('dashboard: in a real headless Chromium', () => {
  let t: TestDatabase;
  let server: DashboardServer;
  let browser: BrowserContext;
  let profile: string;
  const problems: string[] = [];

  before(async () => {
    // The browser comes with the dev dependencies: its absence is a broken setup, which must
    // fail, not skip.
    const executablePath = await chromiumExecutable();
    t = await testDatabase('dashweb');
    profile = await mkdtemp(join(tmpdir(), 'outboxkit-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: [...CHROMIUM_ARGS],
    });
  });
  after(async () => {
    await browser?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
    await server?.close();
    await t?.close();
  });

  /** A new tab that records script errors and CSP violations, which show as console errors. */
  async function open(url: string): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(url);
    // The page sets data-renders after each refresh it drew.
    await page.waitForSelector('body[data-renders]');
    return page;
  }

  it('shows the counts of the database, and a replay click moves the row back to the outbox', async () => {
    await writeMessages(t, [
      { exchange: 'orders', routingKey: 'r', payload: 1, messageId: 'w-1' },
      { exchange: 'orders', routingKey: 'r', payload: 2, messageId: 'w-2' },
      { exchange: 'billing', routingKey: 'r', payload: 3, messageId: 'w-3' },
    ]);
    await t.pool.query(`UPDATE "${t.schema}".outbox SET attempts = 1 WHERE message_id = 'w-2'`);
    // A message id with markup in it: the page must show it as text.
    const hostile = '<img src=x onerror="document.title=1">';
    await parkMessages(t, [
      { exchange: 'billing', routingKey: 'r', payload: 4, messageId: 'p-1' },
      { exchange: 'shipping', routingKey: 'r', payload: 5, messageId: hostile },
    ]);
    server = await serveDashboard({ pool: t.pool, schema: t.schema, allowReplay: true });

    const page = await open(server.url);
    const before = await countsInDatabase(t);
    assert.deepEqual(before.total, { pending: 3, retrying: 1, parked: 2 });
    assert.deepEqual(await shownCounts(page), before);
    assert.equal(await page.locator('img').count(), 0, 'no markup from the data was rendered');
    assert.equal(
      await page.locator('tr[data-parked-id] td:nth-child(2)').last().textContent(),
      hostile,
    );

    const { rows } = await t.pool.query(
      `SELECT id::text AS id FROM "${t.schema}".outbox_parked WHERE message_id = 'p-1'`,
    );
    const id = (rows[0] as { id: string }).id;
    await page.click(`tr[data-parked-id="${id}"] button[data-action="replay"]`);

    // The page redraws after the replay: the row leaves the parked table, the counts follow.
    await page.waitForSelector(`tr[data-parked-id="${id}"]`, { state: 'detached' });
    await page.waitForSelector('[data-testid="total-parked"][data-value="1"]');
    const back = await t.pool.query(
      `SELECT id::text AS id, message_id, attempts FROM "${t.schema}".outbox WHERE id = $1`,
      [id],
    );
    assert.deepEqual(back.rows, [{ id, message_id: 'p-1', attempts: 0 }]);
    const afterReplay = await countsInDatabase(t);
    assert.deepEqual(afterReplay.total, { pending: 4, retrying: 1, parked: 1 });
    assert.deepEqual(await shownCounts(page), afterReplay);
    assert.match((await page.textContent('#notice')) ?? '', /1 done/);
    await page.close();
    assert.deepEqual(problems, []);
  });

  // A browser resolves `..` in a path as a step up: the row's Purge once posted
  // api/queues/<queue>/purge, and all 2 dead letters went.
  it("a dead letter's Purge removes only that one, whatever its message id", async () => {
    const queue = `dashweb-dots-${process.pid}`;
    const connection = await amqp.connect(AMQP_URL);
    const channel = await connection.createConfirmChannel();
    const dlq = deadLetterQueueName(queue);
    await channel.assertQueue(dlq, { durable: true });
    for (const messageId of ['..', 'keep']) {
      channel.sendToQueue(dlq, Buffer.from('{}'), { messageId, contentType: 'application/json' });
    }
    await channel.waitForConfirms();
    const dotted = await serveDashboard({
      pool: t.pool,
      schema: t.schema,
      amqpUrl: AMQP_URL,
      queues: [queue],
      allowReplay: true,
    });
    try {
      const page = await open(dotted.url);
      page.once('dialog', (dialog) => void dialog.accept());
      await page.click('tr[data-message-id=".."] button[data-action="purge"]');
      await page.waitForSelector('tr[data-message-id=".."]', { state: 'detached' });
      const left = [];
      for (let m = await channel.get(dlq); m; m = await channel.get(dlq)) {
        left.push(m.properties.messageId);
      }
      assert.deepEqual(left, ['keep']);
      await page.close();
      assert.deepEqual(problems, []);
    } finally {
      await dotted.close();
      await channel.deleteQueue(dlq);
      await connection.close();
    }
  });

  it('read-only, it shows no buttons; the page follows the database as it refreshes', async () => {
    const readOnly = await serveDashboard({ pool: t.pool, schema: t.schema });
    try {
      const page = await open(readOnly.url);
      assert.equal(await page.locator('button').count(), 0);
      assert.match((await page.textContent('#meta')) ?? '', /read-only/);
      // A row written now shows up at the next refresh, without a reload.
      await writeMessages(t, [{ exchange: 'late', routingKey: 'r', payload: 6 }]);
      await page.waitForSelector('tr[data-exchange="late"]');
      assert.deepEqual(await shownCounts(page), await countsInDatabase(t));
      await page.close();
      assert.deepEqual(problems, []);
    } finally {
      await readOnly.close();
    }
  });
});
