// A row of 280 MB made the relay's process die at each claim, for ever: pg returns a bytea as hex
// text, and Node holds no string that long. The writer's limit could be raised that far.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../src/errors/configuration-error.js';
import { resolveRelayOptions } from '../src/relay/relay-options.js';
import { OutboxWriter } from '../src/writer/outbox-writer.js';

const refused = (error: unknown) => {
  assert.ok(error instanceof ConfigurationError, String(error));
  assert.equal(error.option, 'maxMessageBytes');
  assert.match(error.message, /must be at most 134217728 \(128 MiB\): RabbitMQ's largest default/);
  return true;
};

describe('maxMessageBytes', () => {
  it('is at most 128 MiB for the writer and the relay', () => {
    const max = 128 * 1024 * 1024;
    assert.throws(() => new OutboxWriter({ maxMessageBytes: 300_000_000 }), refused);
    assert.throws(() => new OutboxWriter({ maxMessageBytes: max + 1 }), refused);
    assert.doesNotThrow(() => new OutboxWriter({ maxMessageBytes: max }));
    const relay = (maxMessageBytes: number) => () =>
      resolveRelayOptions({
        databaseUrl: 'postgres://localhost/db',
        amqpUrl: 'amqp://localhost',
        maxMessageBytes,
      });
    assert.throws(relay(max + 1), refused);
    assert.equal(relay(max)().maxMessageBytes, max);
  });
});
