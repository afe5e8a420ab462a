import { redactUrl } from './logger.js';

const SCHEME_AND_AUTHORITY = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Whether `value` is `scheme://...` with nothing around it: the only form passed on to a driver.
 * `postgres:/user:pw@host/db` parses as a URL without a host, and pg and amqplib then connect to
 * localhost with `user:pw@host/...` as the database or vhost name, which the servers log; a
 * space around a URL makes pg read it as a path on a host named `base`.
 */
export function isSchemeUrl(value: string): boolean {
  return SCHEME_AND_AUTHORITY.test(value) && value === value.trim();
}

/**
 * A refused URL as an error may show it: redacted where its password can be found
 * (`scheme://user:***@...`), else only what is wrong with it, since in `user:pw@host` the
 * "scheme" is a user name and the rest a password.
 */
export function refusedUrlText(value: string): string {
  if (value !== value.trim()) return 'a URL with spaces around it';
  return SCHEME_AND_AUTHORITY.test(value) && URL.canParse(value)
    ? redactUrl(value)
    : 'something else';
}
