import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uuidv7 } from '../src/util/uuidv7.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('uuidv7: version 7, RFC 9562 variant, the time in its first 48 bits', () => {
  const now = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const id = uuidv7(now);
  assert.match(id, UUID_V7);
  assert.equal(Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16), now);
});

test('uuidv7: ids differ past the random pool refill, and sort by their time', () => {
  // More ids than one 4 KiB draw of random bytes holds (256), so the refill is crossed.
  const ids = Array.from({ length: 1000 }, (_, i) => uuidv7(1_700_000_000_000 + i));
  assert.equal(new Set(ids).size, ids.length);
  for (const id of ids) assert.match(id, UUID_V7);
  assert.deepEqual([...ids].sort(), ids);
  const sameTime = Array.from({ length: 600 }, () => uuidv7(1_700_000_000_000));
  assert.equal(new Set(sameTime).size, sameTime.length);
});
