import { appendFileSync } from 'node:fs';

/** One row of the fault table: what a scenario committed, and what became of it. */
export interface ScenarioResult {
  readonly scenario: string;
  /** Messages the business committed (rolled-back ones excluded). */
  readonly messages: number;
  /** Committed messages with no effect, no dead letter and no parked row. */
  readonly lost: number;
  /** Effects beyond the first, summed over messages. */
  readonly doubleEffects: number;
  /** Effects of a key applied after an effect of a later version; null where order is not promised. */
  readonly orderViolations: number | null;
  /** Deliveries of a message to the consumer beyond its first (retry copies not counted). */
  readonly duplicatesDelivered: number;
  /** Deliveries acked without running the handler: the dedupe row absorbed them. */
  readonly duplicatesAbsorbed: number;
  /** Relay rows scheduled again plus consumer handler retries. */
  readonly retries: number;
  /** Connections made again after a loss: RabbitMQ and LISTEN, relays and consumers. */
  readonly reconnects: number;
  /** From the fault's healing to the last message accounted for. */
  readonly drainMs: number;
  /** What shows that the fault happened. */
  readonly evidence: string;
  readonly ok: boolean;
  readonly failure?: string;
}

const HEADER = [
  'scenario',
  'messages',
  'lost',
  'double effects',
  'order violations',
  'duplicates delivered / absorbed',
  'retries',
  'reconnects',
  'time to drain',
  'fault observed',
] as const;

function cells(r: ScenarioResult): string[] {
  return [
    r.ok ? r.scenario : `${r.scenario} (FAILED)`,
    String(r.messages),
    String(r.lost),
    String(r.doubleEffects),
    r.orderViolations === null ? 'n/a' : String(r.orderViolations),
    `${r.duplicatesDelivered} / ${r.duplicatesAbsorbed}`,
    String(r.retries),
    String(r.reconnects),
    `${(r.drainMs / 1000).toFixed(1)} s`,
    r.evidence,
  ];
}

/** The results as a Markdown table, for the console and for docs/reliability.md. */
export function formatTable(results: readonly ScenarioResult[]): string {
  const rows = [HEADER.slice(), ...results.map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: readonly string[]) =>
    `| ${r.map((c, i) => (i >= 1 && i <= 8 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i >= 1 && i <= 8 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

const results: ScenarioResult[] = [];

/** Keeps a result for this file's table and, under the suite runner, for the whole run's. */
export function recordResult(result: ScenarioResult): void {
  results.push(result);
  const file = process.env.OUTBOXKIT_FAULTS_REPORT;
  if (file) appendFileSync(file, `${JSON.stringify(result)}\n`);
}

/** Prints this file's table; called once its scenarios are done. */
export function printResults(title: string): void {
  if (results.length === 0) return;
  console.log(`\n${title}\n${formatTable(results)}\n`);
  for (const r of results) {
    if (r.failure) console.log(`${r.scenario}: ${r.failure}`);
  }
}
