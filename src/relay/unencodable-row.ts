import { amqpEncodableNumber, unencodableNumberProblem } from '../amqp/encodable-number.js';
import { SHORT_STRING_BYTES } from '../amqp/short-string.js';
import type { OutboxRow } from './outbox-row.js';

/** How much of a header name a reason quotes. */
const QUOTED_NAME_CHARS = 40;

/**
 * The park reason of a row whose message amqplib could not encode (`error`: its words), naming
 * the column or header at fault where it can: amqplib names neither (a header name over 255
 * bytes reads "... <= 255. Received 300", a created_at before 1970 "Received -2208988800n").
 * The writer refuses all of these; a row written by SQL may have them. Runs only after amqplib
 * refused the message, so it costs the publish of a good row nothing.
 */
export function unencodableReason(row: OutboxRow, error: string): string {
  return `not sent: ${rowProblem(row) ?? error}`;
}

function rowProblem(row: OutboxRow): string | undefined {
  const createdAt = row.created_at_s;
  if (Number.isNaN(createdAt)) {
    return '`created_at` is infinite, which an AMQP timestamp cannot hold';
  }
  if (createdAt < 0) {
    return `\`created_at\` is before 1970 (${createdAt} s from the epoch), which an AMQP timestamp (unsigned seconds since 1970) cannot hold`;
  }
  const columns = [
    ['routing_key', row.routing_key],
    ['message_id', row.message_id],
    ['content_type', row.content_type],
    ['correlation_id', row.correlation_id],
  ] as const;
  for (const [column, value] of columns) {
    const bytes = value === null ? 0 : Buffer.byteLength(value);
    if (bytes > SHORT_STRING_BYTES) {
      return `\`${column}\` is ${bytes} bytes, over the ${SHORT_STRING_BYTES} of an AMQP short string`;
    }
  }
  return row.headers === null ? undefined : tableProblem(row.headers, '');
}

/** The first header, at any depth, that amqplib cannot encode. */
function tableProblem(table: Readonly<Record<string, unknown>>, path: string): string | undefined {
  for (const [name, value] of Object.entries(table)) {
    const at = `${path}${path === '' ? '' : '.'}${quote(name)}`;
    const bytes = Buffer.byteLength(name);
    if (bytes > SHORT_STRING_BYTES) {
      return `header name ${at} is ${bytes} bytes, over the ${SHORT_STRING_BYTES} of an AMQP field name`;
    }
    const problem = valueProblem(value, at);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function valueProblem(value: unknown, path: string): string | undefined {
  if (typeof value === 'number') {
    return amqpEncodableNumber(value)
      ? undefined
      : `header ${path} ${unencodableNumberProblem(value)}`;
  }
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const problem = valueProblem(item, `${path}[${i}]`);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  // amqplib's `{ "!": type, value }` notation follows rules of its own: left to its words.
  if (value !== null && typeof value === 'object' && !Object.hasOwn(value, '!')) {
    return tableProblem(value as Record<string, unknown>, path);
  }
  return undefined;
}

function quote(name: string): string {
  return JSON.stringify(
    name.length > QUOTED_NAME_CHARS ? `${name.slice(0, QUOTED_NAME_CHARS)}...` : name,
  );
}
