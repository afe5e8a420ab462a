import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { NACKS_BEFORE_NEW_CHANNEL } from '../src/amqp/confirmed-publisher.js';
import { RetryPublisher } from '../src/consumer/retry-publisher.js';
import { ReplayPublisher } from '../src/dead-letters/replay-publisher.js';
import { FrameChannel } from './support/amqplib-frame-channel.js';
import { waitFor } from './support/wait-for.js';

/** A connection whose confirm channels are amqplib's own, answered by the test's frames. */
class FrameModel {
  readonly channels: FrameChannel[] = [];
  async createConfirmChannel(): Promise<ConfirmChannel> {
    const channel = new FrameChannel();
    this.channels.push(channel);
    return channel.confirmChannel;
  }
  asModel(): ChannelModel {
    return this as unknown as ChannelModel;
  }
}

/** The copies' connection, up on `model` from the start. */
const alwaysUp = (model: FrameModel) => ({
  start() {},
  ready: async () => model.asModel(),
  close: async () => {},
});

const written = (model: FrameModel, index: number, count: number) =>
  waitFor(`${count} publishes on channel ${index}`, () => {
    return model.channels[index]?.published.length === count;
  });

// The consumer's retry copies and the dead-letter replay publish through a slot that holds one
// confirm channel and replaces it once it nacked NACKS_BEFORE_NEW_CHANNEL publishes in a row.
// Their publishes overlap (several deliveries at once): the one that finds the channel worn out
// must not fail the others still in flight on it.
describe('ConfirmedPublisherSlot: replacing a channel with publishes in flight on it', () => {
  it('a worn-out channel takes no new copies and is closed by the last answer on it', async () => {
    const model = new FrameModel();
    const retry = new RetryPublisher(5000, alwaysUp(model));
    const routable = retry.publish('q', Buffer.from('routable'), {});
    const nacked = Array.from({ length: NACKS_BEFORE_NEW_CHANNEL }, (_, i) =>
      retry.publish('q', Buffer.from(`n${i}`), {}),
    );
    await written(model, 0, NACKS_BEFORE_NEW_CHANNEL + 1);
    const worn = model.channels[0]!;
    for (let i = 1; i <= NACKS_BEFORE_NEW_CHANNEL; i += 1) worn.nack(i);
    for (const copy of nacked) await assert.rejects(copy, /nacked by the broker/);

    const next = retry.publish('q', Buffer.from('next'), {});
    await written(model, 1, 1);
    assert.equal(worn.closeRequested, false, 'closed with a copy in flight on it');
    assert.equal(worn.published.length, NACKS_BEFORE_NEW_CHANNEL + 1, 'the worn-out one took more');
    worn.ack(0);
    await routable;
    assert.equal(worn.closeRequested, true, 'the worn-out channel was left open');
    const fresh = model.channels[1]!;
    fresh.ack(0);
    await next;
    assert.equal(fresh.closeRequested, false);
    await retry.close();
    assert.equal(fresh.closeRequested, true);
  });

  it('a worn-out channel with nothing in flight is closed when it is replaced', async () => {
    const model = new FrameModel();
    const retry = new RetryPublisher(5000, alwaysUp(model));
    const nacked = Array.from({ length: NACKS_BEFORE_NEW_CHANNEL }, (_, i) =>
      retry.publish('q', Buffer.from(`n${i}`), {}),
    );
    await written(model, 0, NACKS_BEFORE_NEW_CHANNEL);
    model.channels[0]!.nack(NACKS_BEFORE_NEW_CHANNEL - 1, true);
    for (const copy of nacked) await assert.rejects(copy, /nacked by the broker/);
    const next = retry.publish('q', Buffer.from('next'), {});
    await written(model, 1, 1);
    assert.equal(model.channels[0]!.closeRequested, true);
    model.channels[1]!.ack(0);
    await next;
    await retry.close();
  });

  it('a replay that timed out closes the channel it used, not the one that replaced it', async () => {
    const model = new FrameModel();
    const replay = new ReplayPublisher(model.asModel(), 2000);
    const copy = (n: string) => replay.publish('', 'q', Buffer.from(n), { persistent: true });
    const unanswered = copy('unanswered');
    const nacked = Array.from({ length: NACKS_BEFORE_NEW_CHANNEL }, (_, i) => copy(`n${i}`));
    await written(model, 0, NACKS_BEFORE_NEW_CHANNEL + 1);
    const worn = model.channels[0]!;
    for (let i = 1; i <= NACKS_BEFORE_NEW_CHANNEL; i += 1) worn.nack(i);
    for (const c of nacked) await assert.rejects(c, /nacked by the broker/);
    // On a new channel, while the first one's last publish still awaits its answer.
    // Answered at once, so that only the first one's time runs out.
    const next = copy('next');
    await written(model, 1, 1);
    const fresh = model.channels[1]!;
    fresh.ack(0);
    await next;
    await assert.rejects(unanswered, /no publisher confirm within 2000 ms/);
    assert.equal(worn.closeRequested, true, 'the channel that timed out was left open');
    assert.equal(fresh.closeRequested, false, 'the cleanup closed the channel that replaced it');
    await replay.close();
    assert.equal(fresh.closeRequested, true);
  });
});
