/** What the load generator did, to compare with what the services did. */
export interface Ledger {
  /** Orders accepted by `POST /orders`. */
  placed: number;
  /** Of those, orders of a SKU nobody stocks: their placement is dead-lettered. */
  discontinued: number;
  /** Of those, orders of the SKU whose first reservation attempt fails. */
  gizmos: number;
  cancelled: number;
  /** `order.placed` published a second time for an order. */
  announced: number;
}

/** How many orders, how many clients at once, and at what pace. */
export interface LoadPlan {
  readonly orders: number;
  readonly concurrency: number;
  /** Orders per second, spread evenly; unlimited when absent. */
  readonly ratePerSecond?: number;
}

/** What happens to order `i`: a fixed mix, so every run shows a retry, a dead letter and the rest. */
export function orderScript(i: number): {
  id: string;
  sku: string;
  quantity: number;
  cancel: boolean;
  announce: boolean;
} {
  // Widgets come in five SKUs: each reservation updates its SKU's stock row, and one row for
  // all orders would serialize them.
  const sku = i % 25 === 7 ? 'discontinued' : i % 10 === 3 ? 'gizmo' : `widget-${i % 5}`;
  const open = sku !== 'discontinued';
  return {
    id: `order-${String(i).padStart(5, '0')}`,
    sku,
    quantity: 1 + (i % 3),
    // Cancelled at once, so the cancellation is written right behind its placement.
    cancel: open && i % 6 === 0,
    announce: open && i % 8 === 1,
  };
}

/**
 * Sends the orders over HTTP from `concurrency` clients: `POST /orders`, then for some a
 * cancellation and a second announcement. Rejects on any unexpected HTTP status.
 */
export async function generateLoad(baseUrl: string, plan: LoadPlan, ledger: Ledger): Promise<void> {
  const started = performance.now();
  let next = 0;
  const post = async (path: string, body?: unknown) => {
    const response = await fetch(`${baseUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    if (!response.ok) {
      throw new Error(`POST ${path} answered ${response.status}: ${await response.text()}`);
    }
  };
  const client = async () => {
    for (let i = next++; i < plan.orders; i = next++) {
      if (plan.ratePerSecond) {
        const due = started + (i * 1000) / plan.ratePerSecond;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      const order = orderScript(i);
      await post('/orders', { id: order.id, sku: order.sku, quantity: order.quantity });
      ledger.placed += 1;
      if (order.sku === 'discontinued') ledger.discontinued += 1;
      if (order.sku === 'gizmo') ledger.gizmos += 1;
      if (order.cancel) {
        await post(`/orders/${order.id}/cancel`);
        ledger.cancelled += 1;
      }
      if (order.announce) {
        await post(`/orders/${order.id}/announce`);
        ledger.announced += 1;
      }
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, client));
}
