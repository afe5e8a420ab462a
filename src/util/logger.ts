/** Where outboxkit reports what it does. Nest's Logger fits through the Nest adapter. */
export interface OutboxLogger {
  debug(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
}

const noop = () => {};

/** Reports warnings and errors on stderr, one JSON line each; silent otherwise. */
export const consoleLogger = (level: 'debug' | 'info' | 'warn' = 'warn'): OutboxLogger => {
  const rank = { debug: 0, info: 1, warn: 2, error: 3 } as const;
  const line = (name: keyof typeof rank) => (message: string, context?: Record<string, unknown>) =>
    console.error(
      JSON.stringify({ time: new Date().toISOString(), level: name, message, ...context }),
    );
  return {
    debug: rank[level] <= 0 ? line('debug') : noop,
    info: rank[level] <= 1 ? line('info') : noop,
    warn: line('warn'),
    error: line('error'),
  };
};

export const silentLogger: OutboxLogger = { debug: noop, info: noop, warn: noop, error: noop };

/** Hides the password of a connection URL, so URLs can be logged and put in errors. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}

/** A message for logs from anything thrown, with credentials in URLs hidden. */
export function errorMessage(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/(\w+:\/\/[^:/@\s]*:)[^@\s]*@/g, '$1***@');
}
