import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { ChannelModel } from 'amqplib';
import * as amqp from 'amqplib';
import { CLOSE_TIMEOUT_MS, closeChannel, closeConnection } from '../src/amqp/close-within.js';
import { AMQP_URL } from './support/env.js';
import { SilentServer } from './support/silent-server.js';

/** Within the close bound, with room for a loaded machine. */
const BOUND_MS = CLOSE_TIMEOUT_MS + 2500;

describe('closeChannel and closeConnection give up on what does not answer', () => {
  let silent: SilentServer;
  before(async () => {
    silent = await SilentServer.start();
  });
  after(() => silent.close());

  it('a connection still being made to a silent broker: returns within the bound', async () => {
    const { port } = silent;
    const connecting = amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    connecting.catch(() => {});
    const started = Date.now();
    await closeConnection(connecting);
    assert.ok(Date.now() - started < BOUND_MS, `took ${Date.now() - started} ms`);
  });

  it('a connection made after the bound is closed when it comes', async () => {
    const model = await amqp.connect(AMQP_URL);
    const closed = once(model, 'close');
    const late = new Promise<ChannelModel>((resolve) =>
      setTimeout(() => resolve(model), CLOSE_TIMEOUT_MS + 300),
    );
    const started = Date.now();
    await closeConnection(late);
    assert.ok(Date.now() - started < BOUND_MS, `took ${Date.now() - started} ms`);
    await closed;
  });

  it('a channel whose opening never ends: returns within the bound', async () => {
    const started = Date.now();
    await closeChannel(new Promise<undefined>(() => {}));
    assert.ok(Date.now() - started < BOUND_MS, `took ${Date.now() - started} ms`);
    await closeChannel(Promise.reject(new Error('failed to open')));
    await closeChannel(undefined);
  });
});
