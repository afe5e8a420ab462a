import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parkedLogContext } from '../src/relay/parked-log-context.js';

test('the parked line keeps `reason` for one reason, counts rows per reason, and lists a few', () => {
  assert.deepEqual(parkedLogContext(['a', 'a']), { count: 2, reason: 'a' });
  assert.deepEqual(parkedLogContext(['a', 'b', 'a']), { count: 3, reasons: { a: 2, b: 1 } });
  // Rows too large for as many sizes: the first five reasons, and how many rows the rest took.
  const sizes = Array.from({ length: 8 }, (_, i) => `too large: ${2000 + i} bytes`);
  assert.deepEqual(parkedLogContext([...sizes, sizes[0]!]), {
    count: 9,
    reasons: {
      'too large: 2000 bytes': 2,
      'too large: 2001 bytes': 1,
      'too large: 2002 bytes': 1,
      'too large: 2003 bytes': 1,
      'too large: 2004 bytes': 1,
    },
    otherReasons: { reasons: 3, rows: 3 },
  });
});

// 194 lines of "outbox rows parked, count 1, reason unroutable" named no exchange or routing key.
test('the parked line names where the rows were to go, as it names why', () => {
  assert.deepEqual(parkedLogContext(['unroutable'], ['orders order.placed']), {
    count: 1,
    reason: 'unroutable',
    destination: 'orders order.placed',
  });
  assert.deepEqual(parkedLogContext(['unroutable', 'unroutable'], ['orders a', 'orders b']), {
    count: 2,
    reason: 'unroutable',
    destinations: { 'orders a': 1, 'orders b': 1 },
  });
});
