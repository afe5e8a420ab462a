import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deadLetterHeaders } from '../src/protocol/copy-headers.js';
import { OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';

describe("a dead letter's error header", () => {
  const errorOf = (message: string) =>
    deadLetterHeaders({}, 'retries-exhausted', 'billing', 3, {
      error: new Error(message),
      at: new Date(0),
      exchange: 'orders',
      routingKey: 'order.placed',
    })[OUTBOXKIT_HEADERS.error] as string;

  it('holds at most 2000 characters, the ellipsis included, as docs/protocol.md says', () => {
    // It was 2001: 2000 of the message and the ellipsis (found by a probe).
    const long = errorOf('x'.repeat(5000));
    assert.equal(long.length, 2000);
    assert.ok(long.endsWith('…'));
    assert.equal(errorOf('y'.repeat(2000)), 'y'.repeat(2000));
  });

  it('does not split a surrogate pair at the cut', () => {
    const cut = errorOf(`${'x'.repeat(1998)}😀tail`);
    // The emoji's two halves would not both fit: neither is kept.
    assert.equal(cut, `${'x'.repeat(1998)}…`);
  });

  const headersOf = (error: unknown) =>
    deadLetterHeaders({}, 'retries-exhausted', 'billing', 3, {
      error,
      at: new Date(0),
      exchange: 'orders',
      routingKey: 'order.placed',
    });

  // String() of these throws: the consumer's run failed "unexpectedly", and the message stayed
  // unacked until the host stopped, never retried, its ordered key's later messages passing it.
  it('records a thrown value that String() cannot convert', () => {
    const bare = headersOf(Object.create(null));
    assert.equal(bare[OUTBOXKIT_HEADERS.error], '[object Object]');
    assert.equal(bare[OUTBOXKIT_HEADERS.errorName], 'object');
    const throwing = {
      toString() {
        throw new Error('no');
      },
      toJSON() {
        throw new Error('no');
      },
    };
    assert.equal(headersOf(throwing)[OUTBOXKIT_HEADERS.error], '[object Object]');
  });

  it("keeps an error's causes and a plain object's fields", () => {
    const inner = new TypeError('socket hang up');
    const outer = new Error('charge failed', { cause: inner });
    assert.equal(
      headersOf(outer)[OUTBOXKIT_HEADERS.error],
      'charge failed (caused by TypeError: socket hang up)',
    );
    assert.equal(
      headersOf({ code: 'E42', detail: 'card declined' })[OUTBOXKIT_HEADERS.error],
      '{"code":"E42","detail":"card declined"}',
    );
  });

  // A 70,000-character name made the copy's headers too large to encode: the message was
  // requeued for ever instead of dead-lettered.
  it("cuts an error's name to 200 characters", () => {
    const error = new Error('x');
    error.name = 'N'.repeat(70_000);
    const name = headersOf(error)[OUTBOXKIT_HEADERS.errorName] as string;
    assert.equal(name.length, 200);
    assert.ok(name.endsWith('…'));
  });
});
