import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DeadLetterQueue } from '../src/dead-letters/dead-letter-queue.js';
import { ParkedMessages } from '../src/dead-letters/parked-messages.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';
import { AMQP_URL } from './support/env.js';
import { parkOutboxRows } from './support/park-outbox-rows.js';
import { refused } from './support/refused.js';
import { TestBroker } from './support/test-broker.js';
import { type TestDatabase, testDatabase } from './support/test-database.js';

/** Filters a bulk replay or purge must refuse, each with the option its error names. */
const BAD_FILTERS: ReadonlyArray<readonly [string, unknown, string, RegExp]> = [
  ['a misspelt key', { reasn: 'zzz' }, 'reasn', /did you mean `reason`\?/],
  ['an unknown key', { queue: 'x' }, 'queue', /is not a dead-letter filter/],
  ['an empty reason', { reason: '' }, 'reason', /would match every dead letter/],
  ['an empty exchange', { exchange: '' }, 'exchange', /must not be empty/],
  ['a null message id', { messageId: null }, 'messageId', /must be a string, got null/],
  ['a number for a reason', { reason: 42 }, 'reason', /must be a string, got 42/],
  ['a string for an age', { olderThanMs: '5' }, 'olderThanMs', /got "5"/],
  ['no filter', undefined, 'filter', /pass \{\} to act on every/],
  ['null for a filter', null, 'filter', /must be an object/],
  ['an array for a filter', [], 'filter', /must be an object/],
];

describe('dead-letter filters: a bad filter is refused, not taken for "everything"', () => {
  let t: TestDatabase;
  let broker: TestBroker;
  before(async () => {
    t = await testDatabase('dl_filter');
    broker = await TestBroker.open();
    const writer = new OutboxWriter({ schema: t.schema });
    await t.db.transaction().execute((trx) =>
      writer.addMany(
        trx,
        [1, 2, 3].map((n) => ({ exchange: 'e', routingKey: 'r', payload: { n } })),
      ),
    );
    await parkOutboxRows(t, 'exchange not found');
  });
  after(async () => {
    await broker.close();
    await t.close();
  });

  it('ParkedMessages: replay, purge, list and count refuse it and change nothing', async () => {
    const parked = new ParkedMessages({ pool: t.pool, schema: t.schema });
    for (const [what, filter, option, message] of BAD_FILTERS) {
      const f = filter as Parameters<ParkedMessages['purge']>[0];
      await assert.rejects(parked.purge(f), refused(option, message), `purge: ${what}`);
      await assert.rejects(parked.replay(f), refused(option, message), `replay: ${what}`);
      if (filter !== undefined) {
        await assert.rejects(parked.list(f), refused(option, message), `list: ${what}`);
        await assert.rejects(parked.count(f), refused(option, message), `count: ${what}`);
      }
    }
    assert.equal(await t.count('outbox_parked'), 3);
    assert.equal(await t.count('outbox'), 0);
    // Where the filter may be left out, leaving it out means every row; undefined fields set nothing.
    assert.equal((await parked.list(undefined)).length, 3);
    assert.equal(await parked.count(undefined), 3);
    assert.equal(await parked.count({ reason: undefined }), 3);
    // A replay or purge by a field whose value happens to be undefined would act on everything.
    const unset = refused('messageId', /is undefined: a replay or purge would then act on every/);
    await assert.rejects(parked.purge({ messageId: undefined }), unset);
    await assert.rejects(parked.replay({ messageId: undefined }), unset);
    assert.equal(await t.count('outbox_parked'), 3);
  });

  it('DeadLetterQueue: replay and purge refuse it and take nothing', async () => {
    const queue = await broker.queue('consumer');
    const dlqName = await broker.queue('consumer.dlq');
    for (const id of ['d-1', 'd-2', 'd-3']) {
      broker.channel.sendToQueue(dlqName, Buffer.from('{}'), {
        messageId: id,
        headers: { [OUTBOXKIT_HEADERS.reason]: 'permanent-error' },
      });
    }
    await broker.waitForDepth(dlqName, 3);
    const dlq = new DeadLetterQueue({ amqpUrl: AMQP_URL, queue });
    try {
      for (const [what, filter, option, message] of BAD_FILTERS) {
        const f = filter as Parameters<DeadLetterQueue['purge']>[0];
        await assert.rejects(dlq.purge(f), refused(option, message), `purge: ${what}`);
        await assert.rejects(dlq.replay(f), refused(option, message), `replay: ${what}`);
        if (filter !== undefined) {
          await assert.rejects(dlq.list(f), refused(option, message), `list: ${what}`);
        }
      }
      assert.equal(await broker.depth(dlqName), 3);
      assert.equal(await broker.depth(queue), 0);
      assert.equal((await dlq.list(undefined)).length, 3);
      const unset = refused('messageId', /is undefined: a replay or purge would then act on every/);
      await assert.rejects(dlq.purge({ messageId: undefined }), unset);
      await assert.rejects(dlq.replay({ messageId: undefined }), unset);
      assert.equal(await broker.depth(dlqName), 3);
    } finally {
      await dlq.close();
    }
  });

  it('DeadLetterQueue: a refused login or virtual host is said as the relay says it, naming the fix', async () => {
    const failure = async (change: (url: URL) => void) => {
      const url = new URL(AMQP_URL);
      change(url);
      const dlq = new DeadLetterQueue({ amqpUrl: url.toString(), queue: 'nowhere' });
      try {
        return await dlq.depth().then(
          () => assert.fail('connected'),
          (error: unknown) => error as { code?: string; message: string },
        );
      } finally {
        await dlq.close();
      }
    };
    const vhost = await failure((url) => {
      url.pathname = '/no-such-vhost';
    });
    assert.equal(vhost.code, 'amqp-connect-failed');
    assert.match(
      vhost.message,
      /refused the virtual host "no-such-vhost".*check the path of the AMQP URL/,
    );
    const login = await failure((url) => {
      url.password = 'wrong-secret';
    });
    assert.equal(login.code, 'amqp-connect-failed');
    assert.match(
      login.message,
      /refused the login \(403 ACCESS_REFUSED\): check the user and password/,
    );
    assert.doesNotMatch(login.message, /wrong-secret/);
  });

  it('DeadLetterQueue: show, replayOne and purgeOne refuse a missing message id before connecting', async () => {
    // Nothing listens on port 1: a check made after connecting would fail to connect instead.
    const dlq = new DeadLetterQueue({ amqpUrl: 'amqp://127.0.0.1:1', queue: 'nowhere' });
    try {
      for (const id of [undefined, '', 42, null]) {
        const messageId = id as string;
        const what = JSON.stringify(id) ?? 'undefined';
        const check = refused('messageId', /must be the message id of a dead letter/);
        await assert.rejects(dlq.show(messageId), check, `show(${what})`);
        await assert.rejects(dlq.replayOne(messageId), check, `replayOne(${what})`);
        await assert.rejects(dlq.purgeOne(messageId), check, `purgeOne(${what})`);
      }
    } finally {
      await dlq.close();
    }
  });
});
