import { ConfigurationError } from '../errors/configuration-error.js';
import { describeValue } from './describe-value.js';
import { valueText } from './thrown-text.js';
/** Where outboxkit reports what it does. Nest's Logger fits through the Nest adapter. */
export interface OutboxLogger {
  debug(message: string, context?: Record<string, unknown>): void;
  info(message: string, context?: Record<string, unknown>): void;
  warn(message: string, context?: Record<string, unknown>): void;
  error(message: string, context?: Record<string, unknown>): void;
}

const noop = () => {};

/** Reports warnings and errors on stderr, one JSON line each; silent otherwise. */
export const consoleLogger = (
  level: 'debug' | 'info' | 'warn' | 'error' = 'warn',
): OutboxLogger => {
  const rank = { debug: 0, info: 1, warn: 2, error: 3 } as const;
  // 'DEBUG' or 'verbose' would otherwise log at warn without a word.
  if (!['debug', 'info', 'warn', 'error'].includes(level)) {
    throw new ConfigurationError(
      'level',
      `must be debug, info, warn or error, got ${describeValue(level)}`,
    );
  }
  const line = (name: keyof typeof rank) => (message: string, context?: Record<string, unknown>) =>
    console.error(
      JSON.stringify({ time: new Date().toISOString(), level: name, message, ...context }),
    );
  return {
    debug: rank[level] <= 0 ? line('debug') : noop,
    info: rank[level] <= 1 ? line('info') : noop,
    warn: rank[level] <= 2 ? line('warn') : noop,
    error: line('error'),
  };
};

export const silentLogger: OutboxLogger = { debug: noop, info: noop, warn: noop, error: noop };

/**
 * Hides the password of a connection URL (in its user info or a `password` query parameter), or
 * of a keyword connection string (`host=x password=y`), so they can be logged and put in errors.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return KEYWORD_STRING.test(url) ? redactSecrets(url) : '<unparseable url>';
  }
  // The URL parser splits user info at the last '@', as drivers do, so a password may hold '@'.
  if (parsed.password) parsed.password = '***';
  for (const key of [...parsed.searchParams.keys()]) {
    if (/password/i.test(key)) parsed.searchParams.set(key, '***');
  }
  return parsed.toString();
}

/** A message for logs from anything thrown, with credentials hidden. */
export function errorMessage(error: unknown): string {
  return redactSecrets(error instanceof Error ? valueText(error.message) : valueText(error));
}

/** Text that starts like a libpq keyword connection string. */
const KEYWORD_STRING = /^\s*[a-z_]+\s*=/i;

/**
 * `scheme://user:password@`. A password may hold '@' and spaces, so it runs to the last '@'
 * before the end of the authority ('/', '?', '#'), the line, or the next URL. It errs towards
 * hiding too much: a URL without credentials followed on its line by an '@' loses that stretch.
 */
const URL_PASSWORD =
  /(\b[a-z][a-z\d+.-]*:\/\/[^\s:/?#@]*:)(?:(?![a-z][a-z\d+.-]*:\/\/)[^\n/?#])*@/gi;

/** `password=secret`, `password='a b'` (libpq quoting, with backslash escapes), `PGPASSWORD = x`. */
const KEYWORD_PASSWORD = /(\b\w*password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s'"&]+)/gi;

/** Text with the passwords of connection URLs and keyword connection strings hidden. */
export function redactSecrets(text: string): string {
  return text.replace(URL_PASSWORD, '$1***@').replace(KEYWORD_PASSWORD, '$1***');
}
