import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isDatabaseUnavailable, isReadOnlyRefusal } from '../src/consumer/database-errors.js';

/** An error as pg gives it: its message and its SQLSTATE in `code`. */
function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('database errors: which are the database, not the message', () => {
  // A consumer at serializable on a standby (a pool left on it after a failover) failed its
  // BEGIN with 0A000, and each delivery counted it as a failed attempt, to the dead-letter queue.
  it("a standby's refusal of serializable is a read-only database, as 25006 is", () => {
    const serializable = pgError('0A000', 'cannot use serializable mode in a hot standby');
    assert.equal(isDatabaseUnavailable(serializable), true);
    assert.equal(isReadOnlyRefusal(serializable), true);
    const readOnly = pgError('25006', 'cannot execute INSERT in a read-only transaction');
    assert.equal(isDatabaseUnavailable(readOnly), true);
    assert.equal(isReadOnlyRefusal(readOnly), true);
  });

  it("other unsupported features stay the statement's own failure", () => {
    const other = pgError('0A000', 'cannot use a row lock here');
    assert.equal(isDatabaseUnavailable(other), false);
    assert.equal(isReadOnlyRefusal(other), false);
  });
});
