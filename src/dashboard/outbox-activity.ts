import { outboxTables } from '../sql/outbox-tables.js';
import type { PgQueryable } from '../sql/sql-executor.js';

/**
 * Running totals of what happened to the outbox of one schema, from Postgres' table statistics.
 * They count the work of every relay and writer on the database, whatever process it runs in.
 */
export interface OutboxActivity {
  /** Rows inserted into the outbox: messages written, and parked rows replayed. */
  readonly written: number;
  /** Rows the relay deleted from the outbox after the broker confirmed them. */
  readonly published: number;
  /** Rows moved from the outbox to the parked table. */
  readonly parked: number;
}

interface StatRow {
  relname: string;
  /** bigint counters, as text. */
  ins: string;
  del: string;
}

/**
 * Reads the outbox's running totals from `pg_stat_user_tables`. A relay deletes each row it
 * published, and parking a row deletes it too, so published = deleted - parked. The figures
 * are Postgres' cumulative statistics: a backend reports them at most once a second, they
 * start again from zero after a statistics reset or a crash, and `null` is returned when the
 * tables have none (not migrated, or statistics off).
 */
export async function readOutboxActivity(
  pool: PgQueryable,
  schema: string | undefined,
): Promise<OutboxActivity | null> {
  const { schemaName } = outboxTables(schema);
  const { rows } = await pool.query(
    `SELECT relname, n_tup_ins::text AS ins, n_tup_del::text AS del
     FROM pg_stat_user_tables
     WHERE schemaname = $1 AND relname IN ('outbox', 'outbox_parked')`,
    [schemaName],
  );
  const outbox = (rows as StatRow[]).find((r) => r.relname === 'outbox');
  const parked = (rows as StatRow[]).find((r) => r.relname === 'outbox_parked');
  if (!outbox || !parked) return null;
  // Counts as text, made numbers here: the pool may be the application's, with its own parsers.
  const [written, deleted, parkedRows] = [
    Number(outbox.ins),
    Number(outbox.del),
    Number(parked.ins),
  ];
  return {
    written,
    // Never below zero, even if the two tables' statistics were reported a moment apart.
    published: Math.max(0, deleted - parkedRows),
    parked: parkedRows,
  };
}
