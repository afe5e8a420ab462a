/**
 * Namespace of outboxkit's advisory locks (the two-int form `pg_advisory_xact_lock(class, key)`),
 * apart from an application's own: the migrator's lock and the writer's per-ordering-key locks.
 */
export const ADVISORY_LOCK_CLASS = 0x6f626b; // "obk"
