import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { amqpUrlList } from '../src/amqp/amqp-urls.js';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { OutboxRelay } from '../src/relay/outbox-relay.js';
import { ConsumerFixture } from './support/consumer-fixture.js';
import { AMQP_URL } from './support/env.js';
import { testRelay, writeMessages } from './support/relay-fixture.js';
import { waitFor } from './support/wait-for.js';

/** A loopback port nothing listens on: connecting there is refused at once, like a node that is down. */
async function deadUrl(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const url = new URL(AMQP_URL);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return url.toString();
}

describe('several RabbitMQ URLs', () => {
  let f: ConsumerFixture;
  before(async () => {
    f = await ConsumerFixture.open('urls');
  });
  after(() => f.close());

  it('accepts one URL or a non-empty list, and names the option otherwise', () => {
    assert.deepEqual(amqpUrlList('amqp://a'), ['amqp://a']);
    assert.deepEqual(amqpUrlList(['amqp://a', 'amqp://b']), ['amqp://a', 'amqp://b']);
    for (const bad of [[], '', [''], [1], undefined]) {
      assert.throws(
        () => amqpUrlList(bad),
        (e: unknown) => e instanceof ConfigurationError && e.option === 'amqpUrl',
      );
      assert.throws(
        () => new OutboxRelay({ databaseUrl: 'postgres://x', amqpUrl: bad as string }),
        ConfigurationError,
      );
    }
  });

  it('refuses a URL that is not amqp:// or amqps://, rather than retrying it for ever', () => {
    for (const bad of [
      'http://guest:secret@localhost:5672',
      'not a url',
      'amqp://guest:secret@127.0.0.1:5672x',
      // One slash parsed, without a host: amqplib went to localhost with "guest:secret@..." as
      // the vhost, and the refusal of that vhost printed it (a security probe).
      'amqp:/guest:secret@rabbit.invalid:5671/prod',
      // No scheme: "guest" was taken for one, and the rest echoed.
      'guest:secret@127.0.0.1:5672',
      ' amqp://guest:secret@127.0.0.1:5672',
    ]) {
      for (const make of [
        () => amqpUrlList(bad),
        () => amqpUrlList(['amqp://a', bad]),
        () => new OutboxRelay({ databaseUrl: 'postgres://x', amqpUrl: bad }),
      ]) {
        assert.throws(make, (e: unknown) => {
          assert.ok(e instanceof ConfigurationError);
          assert.equal(e.option, 'amqpUrl');
          assert.match(e.message, /amqp:\/\/ or amqps:\/\//);
          assert.doesNotMatch(e.message, /secret/);
          return true;
        });
      }
    }
  });

  it('the relay and the consumers fail over from a node that is down to the next URL', async () => {
    const urls = [await deadUrl(), AMQP_URL];
    const def = f.definition('failover', f.recordEffect, { routingKeys: ['failover'] });
    const host = await f.host([def], { amqpUrl: urls });
    const relay = testRelay(f.t, { amqpUrl: urls });
    try {
      await relay.start();
      await writeMessages(
        f.t,
        Array.from({ length: 20 }, (_, i) => ({
          exchange: def.exchange,
          routingKey: 'failover',
          payload: { i },
        })),
      );
      await waitFor('every message handled', () => host.stats(def.name).handled === 20);
      // The relay counts a batch once its DELETE commits, which can be after the handlers ran.
      await waitFor('the relay to count 20 published', () => relay.stats().published >= 20);
      assert.equal(relay.stats().published, 20);
      assert.equal((await f.effects()).length, 20);
    } finally {
      await relay.stop();
    }
  });

  /** The machine's broker under a virtual host it does not have: a refusal no retry mends. */
  const refusedUrl = () => {
    const url = new URL(AMQP_URL);
    url.pathname = `/${f.name('no-such-vhost')}`;
    return url.toString();
  };

  it('a start tries every URL before it fails: a refused node first does not fail it, a dead node first does not hide a refusal', async () => {
    // The first URL's refusal failed the start although the next node would have served it;
    // a dead first node made the start go on, retrying the refused one for ever (a probe).
    const served = testRelay(f.t, { amqpUrl: [refusedUrl(), AMQP_URL] });
    try {
      await served.start();
      await waitFor('the relay connected to the second node', () => served.isConnected);
    } finally {
      await served.stop();
    }
    const refused = testRelay(f.t, { amqpUrl: [await deadUrl(), refusedUrl()] });
    await assert.rejects(refused.start(), {
      name: 'StartupError',
      message: /no-such-vhost/,
    });
  });
});
