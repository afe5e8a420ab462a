import type { ExampleSummary } from './run-example.js';
import type { TraceLine } from './tracing.js';

/** The summary as the terminal shows it. */
export function formatSummary(s: ExampleSummary): string {
  const ms = (value: number | undefined) =>
    value === undefined ? 'n/a' : `${value.toFixed(1)} ms`;
  const rows: [string, string][] = [
    [
      'orders written',
      `${s.ordersInDatabase}  (${s.ledger.cancelled} cancelled, ${s.ledger.announced} announced twice)`,
    ],
    ['messages relayed', `${s.relayed}  (order.placed, order.cancelled, stock.reserved)`],
    [
      'messages handled',
      `${s.handled.inventory} by the inventory, ${s.handled.confirmations} by the confirmations`,
    ],
    ['duplicates suppressed', `${s.duplicates}  (second order.placed of an order: no effect)`],
    ['retries', `${s.retries}  (gizmo warehouse timeouts, retried in place, in order)`],
    ['dead letters', `${s.deadLetters.inQueue}  (discontinued SKU, in ${s.deadLetters.queue})`],
    [
      'effects',
      `${s.reservations} reservations, ${s.releases} releases, ${s.confirmations} confirmations`,
    ],
    ['ordering violations', `${s.orderingViolations}  (cancellations handled before their order)`],
    [
      'commit → handler',
      `p50 ${ms(s.latencyMs.p50)}, p99 ${ms(s.latencyMs.p99)}  (${s.latencyMs.count} orders)`,
    ],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = [
    '',
    'Summary',
    ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    '',
    `Metrics  (GET /metrics, scraped once: ${s.metrics.families.outboxkit} outboxkit families ` +
      `beside the process's ${s.metrics.families.other}, in one prom-client registry)`,
    ...s.metrics.shown.map((line) => `  ${line}`),
    '',
    `Trace of ${s.trace.orderId}  (in-memory OpenTelemetry exporter; start offset, duration)`,
    ...formatTrace(s.trace.spans),
    '',
    'Checks',
  ];
  for (const c of s.checks) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.name}: ${c.detail}`);
  if (s.warnings.length > 0) {
    lines.push(
      '',
      `Warnings logged by outboxkit (${s.warnings.length}; the dead letters are expected):`,
    );
    for (const w of s.warnings.slice(0, 3)) lines.push(`  ${w}`);
    if (s.warnings.length > 3) lines.push(`  ... and ${s.warnings.length - 3} more`);
  }
  return `${lines.join('\n')}\n`;
}

/** A trace as an indented tree, one span a line. */
export function formatTrace(spans: readonly TraceLine[]): string[] {
  if (spans.length === 0) return ['  (no trace recorded)'];
  const labels = spans.map(
    (span) => `${span.depth > 0 ? `${'   '.repeat(span.depth - 1)}└─ ` : ''}${span.name}`,
  );
  const width = Math.max(...labels.map((l) => l.length));
  return spans.map((span, i) => {
    const wait = span.attributes['outboxkit.outbox.wait.duration'];
    const note =
      typeof wait === 'number' ? `  (waited ${(wait * 1000).toFixed(1)} ms in the outbox)` : '';
    return (
      `  ${labels[i]!.padEnd(width)}  ${span.kind.padEnd(8)}  ` +
      `${`+${span.startMs.toFixed(1)}`.padStart(8)} ms  ${span.durationMs.toFixed(1).padStart(6)} ms${note}`
    );
  });
}
