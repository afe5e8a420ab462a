import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Options } from 'amqplib';
import { ConfirmedPublisher, type ConfirmResult } from '../src/amqp/confirmed-publisher.js';
import { PUBLISH_TAG_HEADER } from '../src/protocol/message-headers.js';
import { mulberry32 } from './faults/soak-schedule.js';
import { FrameChannel } from './support/amqplib-frame-channel.js';

const RETURNED: ConfirmResult = { kind: 'returned', replyCode: 312, replyText: 'NO_ROUTE' };

/** Publishes on `publisher` and records every answer, so that a second one is seen. */
function recorder(publisher: ConfirmedPublisher) {
  const answers: ConfirmResult[][] = [];
  return {
    answers,
    send(options: Options.Publish): number {
      const index = answers.length;
      answers.push([]);
      publisher.send('x', 'k', Buffer.from(String(index)), options, (r) => {
        answers[index]!.push(r);
      });
      return index;
    },
  };
}

type Fate = 'ack' | 'return' | 'nack';

describe('ConfirmedPublisher: answer orders, through amqplib frame handling', () => {
  it('one id twice: the untagged first returned, the tagged second acked first', () => {
    const channel = new FrameChannel();
    const p = recorder(new ConfirmedPublisher(channel.confirmChannel));
    p.send({ messageId: 'same' });
    p.send({ messageId: 'same' });
    assert.equal(channel.published[0]!.properties.headers?.[PUBLISH_TAG_HEADER], undefined);
    assert.equal(channel.published[1]!.properties.headers?.[PUBLISH_TAG_HEADER], 2);
    channel.returnOf(0);
    channel.ack(1);
    channel.ack(0);
    assert.deepEqual(p.answers, [[RETURNED], [{ kind: 'confirmed' }]]);
  });

  it('an id free again after its answer while a tagged publish of it is in flight', () => {
    const channel = new FrameChannel();
    const publisher = new ConfirmedPublisher(channel.confirmChannel);
    const p = recorder(publisher);
    p.send({ messageId: 'same' }); // untagged
    p.send({ messageId: 'same' }); // tagged: the first is in flight
    channel.ack(0);
    p.send({ messageId: 'same' }); // untagged again: the only untagged one in flight
    assert.equal(channel.published[2]!.properties.headers?.[PUBLISH_TAG_HEADER], undefined);
    // The third's return comes first, then the second's; one combined ack.
    channel.returnOf(2);
    channel.returnOf(1);
    channel.ack(2, true);
    assert.deepEqual(p.answers, [[{ kind: 'confirmed' }], [RETURNED], [RETURNED]]);

    p.send({ messageId: 'same' }); // untagged
    p.send({ messageId: 'same' }); // tagged
    channel.ack(3);
    p.send({ messageId: 'same' }); // untagged
    // Only the tagged one is returned: the untagged one with its id must not take the return.
    channel.returnOf(4);
    channel.ack(5);
    channel.ack(4);
    assert.deepEqual(p.answers.slice(3), [
      [{ kind: 'confirmed' }],
      [RETURNED],
      [{ kind: 'confirmed' }],
    ]);
    assert.equal(publisher.inFlight, 0);
  });

  it('a publish amqplib refuses leaves its id free for the next one', () => {
    const channel = new FrameChannel();
    const publisher = new ConfirmedPublisher(channel.confirmChannel);
    const p = recorder(publisher);
    // Headers larger than amqplib's encoding buffer: a RangeError before anything is written.
    p.send({ messageId: 'same', headers: { big: 'x'.repeat(70_000) } });
    assert.equal(p.answers[0]![0]!.kind, 'not-sent');
    p.send({ messageId: 'same' });
    assert.equal(channel.published.length, 1);
    assert.equal(channel.published[0]!.properties.headers?.[PUBLISH_TAG_HEADER], undefined);
    channel.returnOf(0);
    channel.ack(0);
    assert.deepEqual(p.answers[1], [RETURNED]);
    assert.equal(publisher.inFlight, 0);
  });

  // Random runs: publishes with repeated, empty, missing and pre-tagged message ids, answered
  // in any order a broker may use (a return before its own ack, single and combined acks and
  // nacks in any order), new publishes sent between the answers, and the channel closed at the
  // end by the broker or with the connection. Every publish must get exactly its own answer.
  // One test for all seeds (each failure names its seed): 300 tiny tests at the end of a file
  // outran the runner's report stream, and --test-force-exit dropped the last reports unseen.
  it('random answer orders, seeds 1 to 300', () => {
    for (let seed = 1; seed <= 300; seed += 1) {
      // The same sequence for a seed, so that a failing run can be replayed.
      const rnd = mulberry32(seed);
      const pick = <T>(items: readonly T[]): T => items[Math.floor(rnd() * items.length)]!;
      const channel = new FrameChannel();
      const publisher = new ConfirmedPublisher(channel.confirmChannel);
      const p = recorder(publisher);
      const fates: Fate[] = [];
      const returned: boolean[] = [];
      const answered: boolean[] = [];
      const expected: ConfirmResult[] = [];
      /** The delivery tag - 1 of each send that amqplib wrote. */
      const wire: number[] = [];
      const idOptions: Array<() => Options.Publish> = [
        () => ({ messageId: 'X' }),
        () => ({ messageId: 'X' }),
        () => ({ messageId: 'Y' }),
        () => ({ messageId: '' }),
        () => ({}),
        () => ({ messageId: 'X', headers: { [PUBLISH_TAG_HEADER]: 1 } }),
        // Refused by amqplib (headers over its encoding buffer): no delivery tag used.
        () => ({ messageId: 'X', headers: { big: 'x'.repeat(70_000) } }),
      ];
      const steps = 10 + Math.floor(rnd() * 30);
      for (let step = 0; step < steps; step += 1) {
        const open = answered.flatMap((a, i) => (a ? [] : [i]));
        if (open.length === 0 || rnd() < 0.45) {
          const fate = pick<Fate>(['ack', 'ack', 'return', 'return', 'nack']);
          const before = channel.published.length;
          const index = p.send(pick(idOptions)());
          const written = channel.published.length > before;
          fates.push(fate);
          returned.push(false);
          answered.push(!written);
          wire.push(written ? before : -1);
          if (!written) {
            assert.equal(p.answers[index]![0]?.kind, 'not-sent');
            expected.push(p.answers[index]![0]!);
            continue;
          }
          expected.push(
            fate === 'ack'
              ? { kind: 'confirmed' }
              : fate === 'nack'
                ? { kind: 'nacked' }
                : RETURNED,
          );
          continue;
        }
        const i = pick(open);
        if (fates[i] === 'return' && !returned[i]) {
          channel.returnOf(wire[i]!);
          returned[i] = true;
          continue;
        }
        // `multiple` where every open publish up to i may take the same answer.
        const upTo = open.filter((j) => wire[j]! <= wire[i]!);
        const ackable = (j: number) => fates[j] === 'ack' || (fates[j] === 'return' && returned[j]);
        const nack = fates[i] === 'nack';
        const multiple =
          rnd() < 0.5 && upTo.every((j) => (nack ? fates[j] === 'nack' : ackable(j)));
        if (nack) channel.nack(wire[i]!, multiple);
        else channel.ack(wire[i]!, multiple);
        for (const j of multiple ? upTo : [i]) answered[j] = true;
      }
      const open = answered.flatMap((a, i) => (a ? [] : [i]));
      for (const i of open) expected[i] = { kind: 'channel-closed' } as ConfirmResult;
      const byBroker = rnd() < 0.5;
      if (byBroker) channel.closeByBroker(406);
      else channel.loseConnection();
      const log = `seed ${seed}: fates ${fates.join(',')}`;
      p.answers.forEach((a, i) => {
        assert.equal(a.length, 1, `${log}: publish ${i} answered ${a.length} times`);
        const want = expected[i]!;
        if (want.kind === 'channel-closed') assert.equal(a[0]!.kind, 'channel-closed', log);
        else assert.deepEqual(a[0], want, `${log}: publish ${i}`);
      });
      assert.equal(publisher.inFlight, 0, log);
    }
  });
});
