import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkScheduleIsReproducible,
  drawSchedule,
  FAULT_KINDS,
  mulberry32,
} from './faults/soak-schedule.js';

describe('the soak schedule', () => {
  it('draws the same schedule twice from one seed, and another from another seed', () => {
    for (const seed of [0, 1, 42, 4_294_967_295]) {
      assert.deepEqual(drawSchedule(seed, 600), drawSchedule(seed, 600));
      assert.notDeepEqual(drawSchedule(seed, 600), drawSchedule((seed + 1) >>> 0, 600));
      checkScheduleIsReproducible(seed, 600);
    }
  });

  it('injects every kind in a minute, one fault every few seconds, none after the end', () => {
    const schedule = drawSchedule(7, 60);
    assert.ok(schedule.length >= 8, `${schedule.length} faults in 60 s`);
    assert.ok(schedule.every((f) => f.atMs < 60_000));
    for (const f of schedule) assert.ok(f.gapMs >= 1500 && f.gapMs <= 4000, `gap ${f.gapMs} ms`);
    for (let i = 1; i < schedule.length; i += 1) {
      const previous = schedule[i - 1]!;
      assert.equal(schedule[i]!.atMs, previous.atMs + previous.holdMs + schedule[i]!.gapMs);
    }
    // Shuffled rounds of every kind: the first round holds each kind once.
    const long = drawSchedule(7, 1800);
    assert.deepEqual(
      new Set(long.slice(0, FAULT_KINDS.length).map((f) => f.kind)),
      new Set(FAULT_KINDS),
    );
  });

  it('mulberry32 is a fixed sequence in [0, 1)', () => {
    const a = mulberry32(123);
    const b = mulberry32(123);
    for (let i = 0; i < 1000; i += 1) {
      const x = a();
      assert.equal(x, b());
      assert.ok(x >= 0 && x < 1);
    }
  });
});
