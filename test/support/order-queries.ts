import type { NestFixture } from './nestjs-fixture.js';

/**
 * Counts over the fixture's schema, and the handler attempts that left an invoice per order.
 * `fixture` is asked at each call: tests open theirs in `before`.
 */
export function orderQueries(fixture: () => NestFixture) {
  const count = async (table: string, where: string, params: unknown[]) =>
    (
      await fixture().query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "${fixture().t.schema}".${table} WHERE ${where}`,
        params,
      )
    )[0]!.n;
  const attempts = async (orderId: number) =>
    (
      await fixture().query<{ attempt: number }>(
        `SELECT attempt FROM "${fixture().t.schema}".invoices WHERE order_id = $1 ORDER BY attempt`,
        [orderId],
      )
    ).map((r) => r.attempt);
  return { count, attempts };
}
