import assert from 'node:assert/strict';
import { describe, it, mock } from 'node:test';
import { ConfirmedPublisher } from '../src/amqp/confirmed-publisher.js';
import { HELD, holdAfterFailure, KeyRunSchedule, unbrokenRuns } from '../src/relay/key-runs.js';
import type { OutboxRow } from '../src/relay/outbox-row.js';
import { type PublishRequest, publishBatch } from '../src/relay/publish-batch.js';
import { ACKED, type PublishOutcome } from '../src/relay/publish-outcome.js';
import { ScriptedConfirmChannel } from './support/scripted-confirm-channel.js';

const PARK: PublishOutcome = { kind: 'permanent', reason: 'unroutable' };
const RETRY: PublishOutcome = { kind: 'transient', reason: 'nacked by the broker' };

function row(id: number, key: string | null): OutboxRow {
  return {
    id: String(id),
    message_id: `m${id}`,
    exchange: 'x',
    routing_key: 'r',
    payload: Buffer.from(String(id)),
    content_type: 'text/plain',
    headers: null,
    ordering_key: key,
    correlation_id: null,
    causation_id: null,
    created_at_s: 0,
    attempts: 0,
    rejections: 0,
  };
}

/** The message ids the scripted channel has been given, in order. */
const sentIds = (channel: ScriptedConfirmChannel) => channel.sent.map((s) => s.options.messageId);

/** Lets amqplib-free callbacks and promise continuations run. */
const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('key runs: which rows of a run may be sent and deleted', () => {
  it('sends rows without a key and the first row of each key at once, the rest one by one', () => {
    const schedule = new KeyRunSchedule(['a', null, 'b', 'a', 'a', null, 'b']);
    assert.deepEqual(schedule.first, [0, 1, 2, 5]);
    assert.equal(schedule.nextAfter(0), 3);
    assert.equal(schedule.nextAfter(3), 4);
    assert.equal(schedule.nextAfter(4), undefined);
    assert.equal(schedule.nextAfter(2), 6);
    assert.equal(schedule.nextAfter(1), undefined);
    assert.deepEqual(schedule.restAfter(0), [3, 4]);
    assert.deepEqual(schedule.restAfter(3), [4]);
    assert.deepEqual(schedule.restAfter(5), []);
  });

  it('holds every row of a key after its first row that was not acked', () => {
    const keys = ['a', 'a', 'a', 'b', 'b', null, null];
    const outcomes = [ACKED, RETRY, ACKED, PARK, ACKED, RETRY, ACKED];
    assert.deepEqual(holdAfterFailure(keys, outcomes), [
      ACKED,
      RETRY,
      // Acked, yet behind a failed row of its key: never deleted.
      HELD,
      PARK,
      HELD,
      // No key, no order: each row keeps its own outcome.
      RETRY,
      ACKED,
    ]);
  });

  it('keeps the unbroken stretch of each run from position 1', () => {
    const runs = unbrokenRuns([
      { ordering_key: 'a', run_pos: 2 },
      { ordering_key: 'b', run_pos: 2 },
      { ordering_key: 'a', run_pos: 1 },
      { ordering_key: 'a', run_pos: 4 },
      { ordering_key: 'c', run_pos: 1 },
    ]);
    assert.deepEqual(
      runs.map((r) => `${r.ordering_key}${r.run_pos}`),
      // a3 was skipped (locked elsewhere): a4 would overtake it. b1 is missing: b goes alone.
      ['a1', 'a2', 'c1'],
    );
  });

  it("keeps runs whose positions come as text (the application's pool parses int4 its own way)", () => {
    const text = (pos: string) => ({ ordering_key: 'a', run_pos: pos as unknown as number });
    const runs = unbrokenRuns([
      text('2'),
      text('10'),
      text('1'),
      ...[3, 4, 5, 6, 7, 8, 9].map(String).map(text),
    ]);
    assert.deepEqual(
      runs.map((r) => Number(r.run_pos)),
      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    );
  });
});

describe('publishBatch: a run of one key on one channel', () => {
  const batch = (rows: readonly OutboxRow[], preset: Record<number, PublishOutcome> = {}) =>
    rows.map((r, i): PublishRequest => ({ row: r, ...(preset[i] && { outcome: preset[i] }) }));

  it('sends the next row of a key only after the one before it is acked', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const rows = [row(1, 'k'), row(2, null), row(3, 'k'), row(4, 'k')];
    const answers = publishBatch(publisher, batch(rows), 5000);
    assert.deepEqual(sentIds(channel), ['m1', 'm2']);
    channel.ackMultiple(1);
    assert.deepEqual(sentIds(channel), ['m1', 'm2', 'm3']);
    channel.ackMultiple(2);
    assert.deepEqual(sentIds(channel), ['m1', 'm2', 'm3', 'm4']);
    channel.ackMultiple(3);
    const { outcomes, unanswered } = await answers;
    assert.deepEqual(outcomes, [ACKED, ACKED, ACKED, ACKED]);
    assert.equal(unanswered, 0);
  });

  it('sends no more of a run once the batch is older than the timeout', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const timeoutMs = 100;
    const rows = [row(1, 'k'), row(2, 'k'), row(3, 'k'), row(4, null)];
    let outcomes: PublishOutcome[] = [];
    // The batch's clock and its timers, moved by the test alone: a loaded machine cannot
    // stretch one wait past another.
    mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    try {
      const answers = publishBatch(publisher, batch(rows), timeoutMs);
      mock.timers.tick(60);
      channel.ackMultiple(1);
      assert.deepEqual(sentIds(channel), ['m1', 'm4', 'm2']);
      // Row 2's own timeout runs from its send (160 ms); the batch's time for runs is up first.
      mock.timers.tick(50);
      channel.ackMultiple(2);
      // Row 2 was sent in time and confirmed; row 3 waits for a later batch, untouched.
      assert.deepEqual(sentIds(channel), ['m1', 'm4', 'm2']);
      outcomes = (await answers).outcomes;
    } finally {
      mock.timers.reset();
    }
    assert.deepEqual(outcomes, [ACKED, ACKED, HELD, ACKED]);
  });

  it('a nack stops the run: the rows after it are never sent and stay as they were', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const rows = [row(1, 'k'), row(2, 'k'), row(3, 'k'), row(4, 'j')];
    const answers = publishBatch(publisher, batch(rows), 5000);
    channel.ackMultiple(0);
    channel.sent[2]!.callback(new Error('nack'));
    await tick();
    channel.ackMultiple(1);
    const { outcomes } = await answers;
    assert.deepEqual(sentIds(channel), ['m1', 'm4', 'm2']);
    assert.deepEqual(outcomes, [ACKED, RETRY, HELD, ACKED]);
  });

  it('a return makes its row unroutable (parked, or retried) and holds the rest of the run', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const answers = publishBatch(publisher, batch([row(1, 'k'), row(2, 'k')]), 5000);
    channel.returnMessage(0);
    channel.ackMultiple(0);
    const { outcomes } = await answers;
    assert.equal(channel.sent.length, 1);
    assert.equal(outcomes[0]!.kind, 'unroutable');
    assert.deepEqual(outcomes[1], HELD);
  });

  it('a preset outcome (exchange missing) in a run holds the rows after it', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const deferred: PublishOutcome = { kind: 'deferred', reason: 'exchange not found', delayMs: 5 };
    const rows = [row(1, 'k'), row(2, 'k'), row(3, 'k')];
    const answers = publishBatch(publisher, batch(rows, { 1: deferred }), 5000);
    channel.ackMultiple(0);
    const { outcomes } = await answers;
    assert.deepEqual(sentIds(channel), ['m1']);
    assert.deepEqual(outcomes, [ACKED, deferred, HELD]);
  });

  it('a timeout fails the publish in flight and holds the unsent rest', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const answers = publishBatch(publisher, batch([row(1, 'k'), row(2, 'k'), row(3, 'k')]), 50);
    channel.ackMultiple(0);
    const { outcomes, unanswered } = await answers;
    assert.equal(unanswered, 1);
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['acked', 'transient', 'held'],
    );
    // An ack after the time-out changes nothing: the row is retried, its successor waits.
    channel.ackMultiple(1);
    assert.equal(channel.sent.length, 2);
  });

  it('a stop releases the publish in flight and holds the unsent rest', async () => {
    const channel = new ScriptedConfirmChannel();
    const publisher = new ConfirmedPublisher(channel.asConfirmChannel());
    const stop = new AbortController();
    const answers = publishBatch(publisher, batch([row(1, 'k'), row(2, 'k')]), 5000, stop.signal);
    stop.abort();
    const { outcomes } = await answers;
    assert.deepEqual(
      outcomes.map((o) => o.kind),
      ['released', 'held'],
    );
  });
});
