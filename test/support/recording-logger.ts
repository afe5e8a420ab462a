import type { OutboxLogger } from '../../src/util/logger.js';

/** A logger that keeps every line, so a test can assert on what was logged or show it. */
export function recordingLogger(): OutboxLogger & { lines: { level: string; text: string }[] } {
  const lines: { level: string; text: string }[] = [];
  const log = (level: string) => (message: string, context?: Record<string, unknown>) => {
    lines.push({ level, text: `${message} ${JSON.stringify(context ?? {})}` });
  };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}
