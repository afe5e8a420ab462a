import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { PinoLogger } from 'nestjs-pino';
import pino from 'pino';
import { outboxLoggerFrom } from '../src/nestjs/nest-logger-adapter.js';
import { pinoOutboxLogger } from '../src/pino/pino-outbox-logger.js';
import type { OutboxLogger } from '../src/util/logger.js';
import { resolveLogger } from '../src/util/resolve-logger.js';

/** A pino logger writing its lines into `lines`. */
function capturedPino(lines: Array<Record<string, unknown>>) {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return pino({ base: { service: 'orders' } }, stream);
}

const unused = (): OutboxLogger => {
  throw new Error('the fallback is for a missing logger only');
};

describe('the logger option', () => {
  it('keeps the fields of a pino logger given as it is', () => {
    const lines: Array<Record<string, unknown>> = [];
    // Type-checks as an OutboxLogger: pino's own info(message, ...args) would drop the context.
    const given: OutboxLogger = capturedPino(lines);
    resolveLogger(given, unused).warn('outbox rows will be retried', { count: 3 });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.msg, 'outbox rows will be retried');
    assert.equal(lines[0]!.count, 3, 'the context as a field');
    assert.equal(lines[0]!.service, 'orders', "the app's own fields");
    assert.equal(lines[0]!.component, 'outboxkit');
  });

  it('keeps the fields of a pino child logger', () => {
    const lines: Array<Record<string, unknown>> = [];
    const given: OutboxLogger = capturedPino(lines).child({ lane: 'relay' });
    resolveLogger(given, unused).info('relay started', { schema: 's' });
    assert.equal(lines[0]!.schema, 's');
    assert.equal(lines[0]!.lane, 'relay');
  });

  it("keeps the fields of nestjs-pino's PinoLogger, in the Nest module too", () => {
    const lines: Array<Record<string, unknown>> = [];
    const pinoLogger = new PinoLogger({ pinoHttp: { logger: capturedPino(lines) } });
    outboxLoggerFrom(pinoLogger).warn('dashboard request failed', { error: 'boom' });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.error, 'boom');
    assert.equal(lines[0]!.msg, 'dashboard request failed');
  });

  it('leaves an OutboxLogger as it is, and a wrapped pino logger wrapped once', () => {
    const own: OutboxLogger = { debug() {}, info() {}, warn() {}, error() {} };
    assert.equal(resolveLogger(own, unused), own);
    const wrapped = pinoOutboxLogger(capturedPino([]));
    assert.equal(resolveLogger(wrapped, unused), wrapped);
    const fallback: OutboxLogger = { ...own };
    assert.equal(
      resolveLogger(undefined, () => fallback),
      fallback,
    );
  });
});
