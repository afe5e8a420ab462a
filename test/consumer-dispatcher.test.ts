import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveryDispatcher, type RunResult } from '../src/consumer/delivery-dispatcher.js';

interface Item {
  readonly orderingKey: string | undefined;
  readonly id: number;
}

/** A run that stays open until the test releases it, so the test controls interleaving. */
function gatedDispatcher(options: { concurrency: number; batchSize?: number; ordered: boolean }) {
  const started: Item[][] = [];
  const gates = new Map<number, (result: RunResult) => void>();
  let running = 0;
  let peak = 0;
  const dispatcher = new DeliveryDispatcher<Item>({
    concurrency: options.concurrency,
    batchSize: options.batchSize ?? 1,
    ordered: options.ordered,
    run: (items) => {
      started.push(items);
      running += 1;
      peak = Math.max(peak, running);
      return new Promise<RunResult>((resolve) => {
        gates.set(items[0]!.id, (result) => {
          running -= 1;
          resolve(result);
        });
      });
    },
    onError: (error) => assert.fail(String(error)),
  });
  const release = async (id: number, result?: RunResult) => {
    const gate = gates.get(id);
    assert.ok(gate, `item ${id} is not running`);
    gates.delete(id);
    gate(result);
    // Let the dispatcher's continuation run.
    await new Promise((r) => setImmediate(r));
  };
  return {
    dispatcher,
    started,
    release,
    peak: () => peak,
    ids: () => started.map((b) => b.map((i) => i.id)),
  };
}

describe('DeliveryDispatcher', () => {
  it('never runs more than `concurrency` at once and keeps arrival order', async () => {
    const d = gatedDispatcher({ concurrency: 2, ordered: false });
    for (let id = 1; id <= 5; id += 1) d.dispatcher.push({ id, orderingKey: undefined });
    assert.deepEqual(d.ids(), [[1], [2]]);
    assert.equal(d.dispatcher.waiting, 3);
    await d.release(2);
    assert.deepEqual(d.ids(), [[1], [2], [3]]);
    await d.release(1);
    await d.release(3);
    await d.release(4);
    await d.release(5);
    assert.deepEqual(d.ids(), [[1], [2], [3], [4], [5]]);
    assert.equal(d.peak(), 2);
    await d.dispatcher.idle();
  });

  it('hands out batches of up to batchSize', async () => {
    const d = gatedDispatcher({ concurrency: 1, batchSize: 3, ordered: false });
    for (let id = 1; id <= 7; id += 1) d.dispatcher.push({ id, orderingKey: undefined });
    assert.deepEqual(d.ids(), [[1]]);
    await d.release(1);
    // Everything that queued up while the first run was busy is batched.
    assert.deepEqual(d.ids(), [[1], [2, 3, 4]]);
    await d.release(2);
    assert.deepEqual(d.ids(), [[1], [2, 3, 4], [5, 6, 7]]);
    await d.release(5);
    await d.dispatcher.idle();
  });

  it('ordered: one item per key at a time, in order, other keys run alongside', async () => {
    const d = gatedDispatcher({ concurrency: 3, ordered: true });
    const push = (id: number, key: string | undefined) =>
      d.dispatcher.push({ id, orderingKey: key });
    push(1, 'a');
    push(2, 'a');
    push(3, 'b');
    push(4, 'a');
    push(5, undefined);
    push(6, 'b');
    assert.deepEqual(d.ids(), [[1], [3], [5]]);
    await d.release(3);
    assert.deepEqual(d.ids().at(-1), [6]);
    await d.release(1);
    assert.deepEqual(d.ids().at(-1), [2]);
    await d.release(5);
    await d.release(6);
    // 4 waits for 2 even with free slots.
    assert.equal(d.dispatcher.active, 1);
    await d.release(2);
    assert.deepEqual(d.ids().at(-1), [4]);
    await d.release(4);
    assert.deepEqual(
      d
        .ids()
        .flat()
        .filter((id) => [1, 2, 4].includes(id)),
      [1, 2, 4],
    );
  });

  it('ordered: a retry frees its slot but holds its key until it ran again', async (t) => {
    // The retry delay runs on mocked time, so a slow machine cannot fire it early.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const d = gatedDispatcher({ concurrency: 1, ordered: true });
    d.dispatcher.push({ id: 1, orderingKey: 'a' });
    d.dispatcher.push({ id: 2, orderingKey: 'a' });
    d.dispatcher.push({ id: 3, orderingKey: 'b' });
    await d.release(1, { retryAfterMs: 30 });
    // The slot went to key b; key a's next item waits for the retry.
    assert.deepEqual(d.ids(), [[1], [3]]);
    await d.release(3);
    assert.equal(d.dispatcher.active, 0);
    assert.equal(d.dispatcher.waiting, 2);
    t.mock.timers.tick(29);
    assert.equal(d.ids().length, 2, 'not before its delay');
    t.mock.timers.tick(1);
    assert.deepEqual(d.ids().at(-1), [1]);
    await d.release(1);
    assert.deepEqual(d.ids().at(-1), [2]);
    await d.release(2);
  });

  it('remove() takes waiting items out, deferred retries included, and frees their keys', async () => {
    const d = gatedDispatcher({ concurrency: 1, ordered: true });
    d.dispatcher.push({ id: 1, orderingKey: 'a' });
    d.dispatcher.push({ id: 2, orderingKey: 'a' });
    await d.release(1, { retryAfterMs: 60_000 });
    assert.equal(d.dispatcher.waiting, 2);
    const removed = d.dispatcher.remove((item) => item.id === 1);
    assert.deepEqual(
      removed.map((i) => i.id),
      [1],
    );
    // Key a is free again, so 2 runs.
    assert.deepEqual(d.ids().at(-1), [2]);
    await d.release(2);
    assert.equal(d.dispatcher.waiting, 0);
  });
});
