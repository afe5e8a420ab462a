import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import * as amqp from 'amqplib';
import { AmqpConnection } from '../src/amqp/amqp-connection.js';
import { declareExchanges } from '../src/amqp/declare-exchanges.js';
import { ConsumerHost } from '../src/consumer/consumer-host.js';
import { StartupError } from '../src/errors/startup-error.js';
import { silentLogger } from '../src/util/logger.js';
import { AMQP_URL } from './support/env.js';
import { recordingLogger } from './support/recording-logger.js';
import { numberedMessages, writeMessages } from './support/relay-fixture.js';
import { relayTestBed } from './support/relay-test-bed.js';
import { waitFor } from './support/wait-for.js';

const run = promisify(execFile);
const rabbitmqctl = (...args: string[]) => run('rabbitmqctl', args);

/**
 * A vhost of this file's own on the machine's broker, as a multi-tenant broker gives one: a
 * `max-queues` limit, and a user who may write and read but not configure (declare).
 */
describe('RabbitMQ refuses a declare: a typed error at once, naming the cause', () => {
  const id = randomUUID().slice(0, 8);
  const vhost = `okt-refusals-${id}`;
  const user = `okt-reader-${id}`;
  const url = (who: string, password: string) => {
    const u = new URL(AMQP_URL);
    u.username = who;
    u.password = password;
    u.pathname = `/${encodeURIComponent(vhost)}`;
    return u.toString();
  };
  const adminUrl = () => url(new URL(AMQP_URL).username, new URL(AMQP_URL).password);
  const limitedUrl = () => url(user, 'reader');
  const bed = relayTestBed('broker_refusals');

  before(async () => {
    await rabbitmqctl('add_vhost', vhost);
    await rabbitmqctl('set_permissions', '-p', vhost, new URL(AMQP_URL).username, '.*', '.*', '.*');
    await rabbitmqctl('add_user', user, 'reader');
    // Configure nothing; write and read everything.
    await rabbitmqctl('set_permissions', '-p', vhost, user, '^$', '.*', '.*');
  });
  after(async () => {
    await rabbitmqctl('delete_vhost', vhost).catch(() => {});
    await rabbitmqctl('delete_user', user).catch(() => {});
  });

  async function consumerStart(amqpUrl: string, name: string): Promise<unknown> {
    const host = new ConsumerHost({
      db: bed.t.db,
      schema: bed.t.schema,
      amqpUrl,
      consumers: [
        { name, exchange: `${name}.events`, routingKeys: ['#'], handler: async () => {} },
      ],
      startTimeoutMs: 10_000,
      retention: false,
      logger: silentLogger,
    });
    const started = performance.now();
    try {
      await host.start();
      return undefined;
    } catch (error) {
      // Before, each of these retried for the whole startTimeoutMs, then said RabbitMQ "could
      // not be reached".
      assert.ok(
        performance.now() - started < 5000,
        `refused at once, not at the time-out: ${error}`,
      );
      return error;
    } finally {
      await host.stop();
    }
  }

  it("says a vhost's queue limit refused the consumer's queue, not that it conflicts", async () => {
    await rabbitmqctl('set_vhost_limits', '-p', vhost, '{"max-queues": 1}');
    try {
      const error = await consumerStart(adminUrl(), 'limited');
      assert.ok(error instanceof StartupError, String(error));
      assert.equal(error.code, 'broker-limit-reached');
      assert.match(error.message, /queue limit in vhost .* is reached/);
    } finally {
      await rabbitmqctl('clear_vhost_limits', '-p', vhost);
    }
  });

  it('says the user may not declare the consumer host needs', async () => {
    const error = await consumerStart(limitedUrl(), 'no-configure');
    assert.ok(error instanceof StartupError, String(error));
    assert.equal(error.code, 'broker-access-refused');
    assert.match(error.message, /ACCESS_REFUSED/);
    assert.match(error.message, /configure permission/);
  });

  it("declareExchanges rejects with a StartupError, not amqplib's own error", async () => {
    await assert.rejects(
      declareExchanges(limitedUrl(), [{ name: 'refused-orders' }], { logger: silentLogger }),
      (error: unknown) => {
        assert.ok(error instanceof StartupError, String(error));
        assert.equal(error.code, 'broker-access-refused');
        assert.match(error.message, /exchange "refused-orders"/);
        return true;
      },
    );
  });

  it('the relay publishes to a declared exchange that its user may not declare', async () => {
    // An operator declared the exchange and the queue; the relay's user only writes.
    const admin = await amqp.connect(adminUrl());
    try {
      const channel = await admin.createChannel();
      await channel.assertExchange('orders', 'topic', { durable: true });
      await channel.assertQueue('orders-all', { durable: true });
      await channel.bindQueue('orders-all', 'orders', '#');
      const total = 50;
      await writeMessages(bed.t, numberedMessages('orders', total, 'refused'));
      // Before, every batch failed on the refused declare: 0 of 50 published.
      const relay = await bed.start({
        amqpUrl: limitedUrl(),
        exchanges: [{ name: 'orders', type: 'topic' }],
      });
      await waitFor('the outbox drained', async () => (await bed.t.count()) === 0, 15_000);
      await relay.stop();
      assert.equal((await channel.checkQueue('orders-all')).messageCount, total);
    } finally {
      await admin.close();
    }
  });
});

describe('RabbitMQ refuses a reconnect: the log says what to fix', () => {
  const vhost = `okt-gone-${randomUUID().slice(0, 8)}`;
  after(async () => {
    await rabbitmqctl('delete_vhost', vhost).catch(() => {});
  });

  it('a vhost deleted under a running connection is named in the retries, not as protocol text', async () => {
    await rabbitmqctl('add_vhost', vhost);
    await rabbitmqctl('set_permissions', '-p', vhost, new URL(AMQP_URL).username, '.*', '.*', '.*');
    const url = new URL(AMQP_URL);
    url.pathname = `/${encodeURIComponent(vhost)}`;
    const logger = recordingLogger();
    const connection = new AmqpConnection({
      urls: [url.toString()],
      heartbeatSeconds: 5,
      reconnectBackoff: { initialMs: 50, maxMs: 200 },
      logger,
      connectionName: 'okt-vhost-gone',
    });
    connection.start();
    try {
      assert.ok(await connection.ready(AbortSignal.timeout(10_000)), 'connected');
      await rabbitmqctl('delete_vhost', vhost);
      const line = await waitFor('a retry line', () =>
        logger.lines.find((l) => l.text.startsWith('RabbitMQ connection failed; retrying')),
      );
      assert.match(line.text, /refused the virtual host \\"okt-gone-/);
      assert.doesNotMatch(line.text, /Expected ConnectionOpenOk/);
    } finally {
      await connection.close();
    }
  });
});
