import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

// Every error outboxkit lets reach its users is an OutboxkitError with a stable `code`
// (docs/errors.md). A plain `new Error(` or `new TypeError(` in src/ is allowed only where the
// error never escapes: each such place is listed here with the reason. A new one fails this test
// until it becomes an OutboxkitError (or a subclass) or is listed with its reason; a listed one
// that is gone fails it too, so the list stays true.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** `file` (relative to the repo) and a piece of the line, with why it never reaches a user. */
const INTERNAL: ReadonlyArray<{ file: string; line: string; reason: string }> = [
  {
    file: 'src/nestjs/bootstrap-migration.ts',
    line: 'new Error(`no answer within ',
    reason: 'the cause of the StartupError (database-unreachable) that the bootstrap throws',
  },
  {
    file: 'src/relay/outbox-relay.ts',
    line: "new Error('the relay stopped while Postgres did not answer')",
    reason:
      "a stopping relay's lanes see it on the connections it drops, and end without logging it",
  },
  {
    file: 'src/sql/checkout-client.ts',
    line: 'new Error(String(reason))',
    reason: 'the reason a dropped client gives its pending statements; its owner is stopping',
  },
  {
    file: 'src/consumer/retry-publisher.ts',
    line: 'new Error(`not connected to RabbitMQ, or blocked,',
    reason: 'the failure router catches it and hands the delivery back to the queue',
  },
  {
    file: 'src/consumer/retry-publisher.ts',
    line: 'new Error(`the copy for ',
    reason: 'the failure router catches it and hands the delivery back to the queue',
  },
  {
    file: 'src/relay/exchange-registry.ts',
    line: "new Error('not connected to RabbitMQ')",
    reason: 'the relay lane catches it and puts its rows off until RabbitMQ is back',
  },
  {
    file: 'src/dead-letters/replay-publisher.ts',
    line: 'new Error(`exchange ',
    reason: "the replay records its message in the dead letter's ReplayFailure",
  },
  {
    file: 'src/dead-letters/replay-publisher.ts',
    line: 'throw new Error(',
    reason:
      "why a copy was not confirmed: the replay records it in the dead letter's ReplayFailure",
  },
  {
    file: 'src/dead-letters/dead-letter-queue.ts',
    line: 'throw new Error(',
    reason:
      "no recorded exchange, or no queue or partition set, to replay to: the replay records it in the dead letter's ReplayFailure",
  },
  {
    file: 'src/amqp/close-within.ts',
    line: 'stream?.destroy(new Error(',
    reason: 'destroys the socket of a hung connection; swallowed by the listener set just before',
  },
  {
    file: 'src/relay/outbox-listener.ts',
    line: "onLost(new Error('connection ended'))",
    reason: 'tells the LISTEN loop its connection ended; it logs it and reconnects',
  },
  {
    file: 'src/consumer/parse-delivery.ts',
    line: 'new Error(valueText(error))',
    reason: "wraps a non-Error thrown by a user's validate, for the dead letter's error header",
  },
];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

test('no plain Error escapes from src/ (each internal one is listed with its reason)', () => {
  const unlisted: string[] = [];
  const used = new Set<number>();
  for (const path of sources(join(ROOT, 'src'))) {
    const file = relative(ROOT, path).split('\\').join('/');
    // The page's script runs in the browser and throws nothing to a Node caller.
    if (file.startsWith('src/dashboard/page/')) continue;
    readFileSync(path, 'utf8')
      .split('\n')
      .forEach((text, i) => {
        if (!/\bnew (Type)?Error\(/.test(text)) return;
        const at = INTERNAL.findIndex((a) => a.file === file && text.includes(a.line));
        if (at === -1) unlisted.push(`${file}:${i + 1}: ${text.trim()}`);
        else used.add(at);
      });
  }
  assert.deepEqual(
    unlisted,
    [],
    'throw an OutboxkitError (with a code in docs/errors.md) instead, or list the place in INTERNAL with why it never reaches a user',
  );
  const stale = INTERNAL.filter((_, i) => !used.has(i)).map((a) => `${a.file}: ${a.line}`);
  assert.deepEqual(stale, [], 'these INTERNAL entries match nothing any more: remove them');
});
