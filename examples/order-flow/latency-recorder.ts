import { Injectable } from '@nestjs/common';

/**
 * Commit-to-handler latency of each order: from the moment the order's transaction committed
 * (in the controller) to the first call of the inventory handler for it. Both run in this
 * process, so one clock measures both ends.
 */
@Injectable()
export class LatencyRecorder {
  readonly #committed = new Map<string, number>();
  readonly #latencies: number[] = [];

  committed(orderId: string): void {
    this.#committed.set(orderId, performance.now());
  }

  handled(orderId: string): void {
    const start = this.#committed.get(orderId);
    if (start === undefined) return;
    this.#committed.delete(orderId);
    this.#latencies.push(performance.now() - start);
  }

  /** The `p`th percentile (0 to 100) in milliseconds, or undefined before any measurement. */
  percentile(p: number): number | undefined {
    if (this.#latencies.length === 0) return undefined;
    const sorted = [...this.#latencies].sort((a, b) => a - b);
    const rank = Math.ceil((p / 100) * sorted.length) - 1;
    return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
  }

  get count(): number {
    return this.#latencies.length;
  }
}
