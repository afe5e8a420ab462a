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
});
