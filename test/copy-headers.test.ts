import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentHeaderBytes, fieldTableBytes } from '../src/amqp/content-header-bytes.js';
import { deadLetterHeaders, retryHeaders } from '../src/protocol/copy-headers.js';
import { DROPPED_HEADERS_HEADER, OUTBOXKIT_HEADERS } from '../src/protocol/dead-letter-headers.js';
import { encodableCopy } from '../src/protocol/encodable-copy.js';

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

describe("a copy's headers over amqplib's 64 KiB or the broker's frame", () => {
  const limits = { maxContentHeaderBytes: 131_072 - 40, maxHeadersBytes: 65_536 - 40 };
  const failure = {
    error: new Error(`refused: ${'e'.repeat(1500)}`),
    at: new Date(0),
    exchange: 'orders',
    routingKey: 'order.placed',
  };
  const fits = (p: ReturnType<typeof encodableCopy>) =>
    contentHeaderBytes(p) <= limits.maxContentHeaderBytes &&
    fieldTableBytes(p.headers ?? {}) <= limits.maxHeadersBytes;

  // A Java service's 90 KB of headers (RabbitMQ takes them): the copy was never taken, and the
  // message went back to its queue for ever.
  it("leaves out the original's largest headers, names them, and keeps the error whole", () => {
    const original = { 'x-jwt': 'j'.repeat(90 * 1024), 'x-trace': 't'.repeat(20_000), small: 1 };
    const headers = retryHeaders(original, 1, failure);
    const copy = encodableCopy({ messageId: 'm', headers }, limits);
    assert.ok(fits(copy));
    assert.deepEqual(copy.headers?.[DROPPED_HEADERS_HEADER], ['x-jwt']);
    assert.equal(copy.headers?.['x-trace'], original['x-trace']);
    assert.equal(copy.headers?.small, 1);
    assert.equal(copy.headers?.[OUTBOXKIT_HEADERS.error], `refused: ${'e'.repeat(1500)}`);
    assert.equal(copy.headers?.[OUTBOXKIT_HEADERS.retries], 1);

    // The next copy (here, the dead letter) adds to the list what it leaves out in turn.
    const again = deadLetterHeaders(
      { ...copy.headers, 'x-more': 'm'.repeat(60_000) },
      'retries-exhausted',
      'billing',
      2,
      failure,
    );
    const dead = encodableCopy({ headers: again }, limits);
    assert.ok(fits(dead));
    assert.deepEqual(dead.headers?.[DROPPED_HEADERS_HEADER], ['x-jwt', 'x-more']);
  });

  it('cuts only the error when that makes room, and never drops the attempt count', () => {
    const headers = retryHeaders({ note: 'n'.repeat(64_500) }, 2, failure);
    const copy = encodableCopy({ headers }, limits);
    assert.ok(fits(copy));
    assert.equal(copy.headers?.note, 'n'.repeat(64_500));
    assert.equal(copy.headers?.[DROPPED_HEADERS_HEADER], undefined);
    assert.match(String(copy.headers?.[OUTBOXKIT_HEADERS.error]), /^refused: e+…$/);

    // Thousands of small headers: the largest go first, the attempt count stays.
    const many = Object.fromEntries(
      Array.from({ length: 5000 }, (_, i) => [`h${i}`, 'v'.repeat(i % 20)]),
    );
    const crowded = encodableCopy({ headers: retryHeaders(many, 2, failure) }, limits);
    assert.ok(fits(crowded));
    assert.equal(crowded.headers?.[OUTBOXKIT_HEADERS.retries], 2);
    const dropped = crowded.headers?.[DROPPED_HEADERS_HEADER] as string[];
    assert.equal(dropped.length, 33);
    assert.match(dropped.at(-1)!, /^…and \d+ more$/);
  });

  it('sends a timestamp property the decoder rounded to 2^64 as the largest it can', () => {
    assert.equal(encodableCopy({ timestamp: 2 ** 64 }, limits).timestamp, 2 ** 64 - 2048);
    const fine = { timestamp: 1_700_000_000, headers: { a: 1 } };
    assert.equal(encodableCopy(fine, limits), fine);
  });
});
