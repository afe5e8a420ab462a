import { createHash } from 'node:crypto';
import { inspect } from 'node:util';
import type { Kysely } from 'kysely';
import { errorMessage, type OutboxLogger } from '../util/logger.js';
import { kyselyQueryable } from './kysely-queryable.js';

/** What the probe sends by name, and looks for among the session's prepared statements. */
const PROBE_TEXT = 'SELECT 1 AS outboxkit_statement_names_probe';

/**
 * Sends outboxkit's fixed statements to Postgres by name, through the application's Kysely, so
 * that each connection parses and plans them once rather than at every call. Postgres spent
 * about 60 us a message parsing and planning the consumer's claim again (benchmark 6); a named
 * statement is what pg prepares once per connection.
 *
 * Kysely's Postgres driver hands a compiled query's `sql` to pg's `client.query` as it is, and pg
 * takes a `{ text, name, values }` object there as a named statement. Kysely has no way to say
 * so, so `sql` carries that object, which string methods, template strings, `JSON.stringify` and
 * `util.inspect` read as its text (a logger of Kysely's `log` option sees the text; only
 * `typeof` tells). Whether a driver honours it is not assumed: `probe` checks that a statement so
 * sent reached Postgres prepared, and naming stays off otherwise. It goes off for good when a
 * session's prepared statements are not what pg believes (`DISCARD ALL`, or a pooler in
 * transaction mode that moves sessions between clients: `isStatementNameError`), and the caller
 * runs the statement again unnamed.
 */
export class StatementNames {
  /** `off for good` once turned off: a probe that answers late must not turn naming on again. */
  #state: 'off' | 'on' | 'off for good' = 'off';
  readonly #names = new Map<string, string>();

  /**
   * What to give a `CompiledQuery` as its `sql` for `text` and its `values`: `text` itself while
   * naming is off, else `text` with its name, which reads as `text` to anything but pg.
   */
  sql(text: string, values: readonly unknown[]): string {
    if (this.#state !== 'on') return text;
    let name = this.#names.get(text);
    if (name === undefined) {
      name = statementNameOf(text);
      this.#names.set(text, name);
    }
    return namedStatement(text, name, values);
  }

  /**
   * Sends a statement by name on one connection of `db`, and turns naming on when Postgres then
   * holds it prepared in that session (by its text: a pooler that prepares statements for its
   * clients, PgBouncer 1.21 and later, renames them). Any failure leaves naming off; either way
   * `logger` gets a debug line.
   */
  // biome-ignore lint/suspicious/noExplicitAny: only outboxkit's own statements run on it
  async probe(db: Kysely<any>, logger: OutboxLogger): Promise<boolean> {
    let prepared = false;
    try {
      // One connection, no transaction: both statements must meet the same session.
      prepared = await db.connection().execute(async (connection) => {
        const statements = kyselyQueryable(connection);
        await statements.query(namedStatement(PROBE_TEXT, statementNameOf(PROBE_TEXT), []), []);
        const { rows } = await statements.query(
          'SELECT 1 FROM pg_prepared_statements WHERE statement = $1 AND NOT from_sql',
          [PROBE_TEXT],
        );
        return rows.length > 0;
      });
    } catch (error) {
      logger.debug('the claim goes unnamed: the probe for named statements failed', {
        error: errorMessage(error),
      });
      return false;
    }
    if (prepared && this.#state === 'off') this.#state = 'on';
    logger.debug(
      this.#state === 'on'
        ? 'the claim goes as a named statement'
        : 'the claim goes unnamed: the database driver did not send a statement by name',
    );
    return this.#state === 'on';
  }

  /** Turns naming off for good; returns whether it was on. */
  turnOff(): boolean {
    const was = this.#state === 'on';
    this.#state = 'off for good';
    return was;
  }
}

/** The name `text` goes by: one per text, as pg refuses two texts of one name on a client. */
export function statementNameOf(text: string): string {
  return `outboxkit_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`;
}

/**
 * pg's query config for a named statement, shaped to pass for the string `text` elsewhere: on
 * `String.prototype`, it has the string methods, which read it through `toString`.
 */
class NamedText {
  readonly text: string;
  readonly name: string;
  /** Also here for instrumentations of pg that read them from the config (pg takes its own). */
  readonly values: readonly unknown[];

  constructor(text: string, name: string, values: readonly unknown[]) {
    this.text = text;
    this.name = name;
    this.values = values;
  }

  get length(): number {
    return this.text.length;
  }

  toString(): string {
    return this.text;
  }

  valueOf(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }

  [inspect.custom](): string {
    return this.text;
  }
}
Object.setPrototypeOf(NamedText.prototype, String.prototype);

/**
 * What to send as a statement's text for pg to run `text` as the prepared statement `name`:
 * reads as `text` to anything but pg (see `StatementNames`). Made at each call: older pg versions
 * write the parameters into the config they are given.
 */
export function namedStatement(text: string, name: string, values: readonly unknown[]): string {
  return new NamedText(text, name, values) as unknown as string;
}
