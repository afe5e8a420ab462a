import { OutboxkitError } from '../errors/outboxkit-error.js';
import type { SchemaIssue } from './payload-validator.js';

/** Issues listed in the message, at most; the error's `issues` keeps them all. */
const MAX_ISSUES = 10;

/**
 * A consumer's schema (`validate`) refused a payload. The message is dead-lettered with this
 * error's name and message in its headers: `<vendor> schema: path: message; ...`.
 */
export class PayloadSchemaError extends OutboxkitError {
  /** The schema's library, as it names itself (`zod`, `valibot`, `arktype`...). */
  readonly vendor: string;
  readonly issues: readonly SchemaIssue[];

  constructor(vendor: string, issues: readonly SchemaIssue[]) {
    super('payload-schema', `${vendor} schema: ${issuesText(issues)}`);
    this.vendor = vendor;
    this.issues = issues;
  }
}

/** Issues as one line, `path: message` each, at most the first ten. */
function issuesText(issues: readonly SchemaIssue[]): string {
  const shown = issues.slice(0, MAX_ISSUES).map((issue) => {
    const path = (issue.path ?? [])
      .map((part) => String(typeof part === 'object' ? part.key : part))
      .join('.');
    return path === '' ? issue.message : `${path}: ${issue.message}`;
  });
  const more = issues.length - shown.length;
  return more > 0 ? `${shown.join('; ')}; and ${more} more` : shown.join('; ');
}
