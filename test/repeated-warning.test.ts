import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import type { OutboxLogger } from '../src/util/logger.js';
import { RepeatedWarning } from '../src/util/repeated-warning.js';

/** Keeps every warning's context. */
function recordingLogger(lines: Record<string, unknown>[]): OutboxLogger {
  const none = () => {};
  return {
    debug: none,
    info: none,
    error: none,
    warn: (_m, context) => lines.push({ ...context }),
  };
}

describe('RepeatedWarning', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 }));
  afterEach(() => mock.timers.reset());

  it('logs the first at once, then one line per interval whose counts add up', () => {
    const lines: Record<string, unknown>[] = [];
    const warning = new RepeatedWarning(recordingLogger(lines), 'rows retried', 10_000);
    warning.add(3, { reason: 'nacked' });
    assert.deepEqual(lines, [{ count: 3, batches: 1, reason: 'nacked' }]);

    // Forty batches over 20 s: one line at the end of each interval, with the first reason of it.
    for (let i = 0; i < 40; i += 1) {
      mock.timers.tick(500);
      warning.add(2, { reason: i === 0 ? 'timeout' : 'nacked' });
    }
    assert.equal(lines.length, 3);
    assert.deepEqual(lines[1], { count: 38, batches: 19, reason: 'timeout' });
    assert.equal(lines[2]!.batches, 20);
    warning.flush();
    const total = lines.reduce((n, l) => n + Number(l.count), 0);
    assert.equal(total, 3 + 40 * 2);
  });

  it('logs what was summed when the repeats stop, and at once again after a quiet interval', () => {
    const lines: Record<string, unknown>[] = [];
    const warning = new RepeatedWarning(recordingLogger(lines), 'rows retried', 10_000);
    warning.add(1, {});
    mock.timers.tick(100);
    warning.add(1, {});
    warning.add(1, {});
    assert.equal(lines.length, 1);
    mock.timers.tick(9_900);
    assert.deepEqual(lines[1], { count: 2, batches: 2 });
    // Nothing pending: the timer has nothing to log, and a flush neither.
    mock.timers.tick(30_000);
    warning.flush();
    assert.equal(lines.length, 2);
    warning.add(5, {});
    assert.deepEqual(lines[2], { count: 5, batches: 1 });
  });

  it('a flush at a stop logs what is pending and ends the interval: no timer is left waiting', () => {
    const lines: Record<string, unknown>[] = [];
    const warning = new RepeatedWarning(recordingLogger(lines), 'rows retried', 10_000);
    warning.add(1, {});
    warning.add(2, {});
    warning.flush();
    assert.deepEqual(lines, [
      { count: 1, batches: 1 },
      { count: 2, batches: 1 },
    ]);
    mock.timers.tick(10_000);
    assert.equal(lines.length, 2);
    // The interval ended with the flush: a later occurrence is not held back.
    warning.add(3, {});
    assert.deepEqual(lines[2], { count: 3, batches: 1 });
  });

  it('a wall clock stepped back does not hold the summed line back', (t) => {
    // Timers run on their own clock, as real ones do; the mocked Date would move them too.
    mock.timers.reset();
    mock.timers.enable({ apis: ['setTimeout'] });
    let wall = 1_000_000;
    t.mock.method(Date, 'now', () => wall);
    const lines: Record<string, unknown>[] = [];
    const warning = new RepeatedWarning(recordingLogger(lines), 'rows retried', 10_000);
    warning.add(1, {});
    // NTP steps the clock back a quarter of an hour (a resumed VM, a corrected drift).
    wall -= 900_000;
    warning.add(2, {});
    mock.timers.tick(10_000);
    assert.deepEqual(lines[1], { count: 2, batches: 1 });
  });
});
