import { writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { pathToFileURL } from 'node:url';

/** How long `waitForQuiet` may wait; 0 in quick mode. */
let quietMaxWaitMs = 60_000;

/** Options every benchmark understands. */
export interface BenchArgs {
  /** Tiny counts: proves the benchmark works, its figures mean nothing. */
  readonly quick: boolean;
  /** Also write the figures to this file as JSON. */
  readonly json: string | undefined;
  /** Repetitions per measurement; the tables show their median, min and max. */
  readonly runs: number;
  /** Benchmark-specific flags, `--name value` or `--name`. */
  readonly extra: ReadonlyMap<string, string>;
}

export function parseBenchArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const extra = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`);
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith('--')) {
      extra.set(arg.slice(2), next);
      i += 1;
    } else {
      extra.set(arg.slice(2), 'true');
    }
  }
  const quick = extra.get('quick') === 'true';
  // Quick mode proves the benchmark works; it need not wait for a quiet machine.
  if (quick || extra.get('no-wait') === 'true') quietMaxWaitMs = 0;
  else if (extra.has('quiet-wait')) quietMaxWaitMs = Number(extra.get('quiet-wait')) * 1000;
  const runs = Number(extra.get('runs') ?? (quick ? 1 : 3));
  if (!Number.isSafeInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  return { quick, json: extra.get('json'), runs, extra };
}

/** An integer flag, with the quick and the full default. */
export function intFlag(args: BenchArgs, name: string, quick: number, full: number): number {
  const raw = args.extra.get(name);
  const value = raw === undefined ? (args.quick ? quick : full) : Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be an integer`);
  return value;
}

/** A comma-separated list flag. */
export function listFlag(args: BenchArgs, name: string, fallback: readonly string[]): string[] {
  const raw = args.extra.get(name);
  return raw === undefined ? [...fallback] : raw.split(',').filter((s) => s.length > 0);
}

/** Progress goes to stderr so that stdout holds only the tables. */
export function progress(message: string): void {
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)} load ${load}] ${message}\n`);
}

export interface Measurement {
  readonly name: string;
  readonly unit: string;
  readonly values: readonly number[];
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** Median of the per-run ratios to the baseline measured in the same run, when there is one. */
  readonly ratio?: number;
  readonly note?: string;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

export function measurement(
  name: string,
  unit: string,
  values: readonly number[],
  extra: { ratios?: readonly number[]; note?: string } = {},
): Measurement {
  return {
    name,
    unit,
    values,
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    ...(extra.ratios && extra.ratios.length > 0 && { ratio: median(extra.ratios) }),
    ...(extra.note !== undefined && { note: extra.note }),
  };
}

export interface BenchReport {
  readonly benchmark: string;
  readonly title: string;
  readonly settings: Record<string, unknown>;
  readonly sections: readonly { readonly title: string; readonly rows: readonly Measurement[] }[];
  /** Tables that are not medians of runs, such as a time series. */
  readonly tables?: readonly FreeTable[];
  readonly notes?: readonly string[];
}

export interface FreeTable {
  readonly title: string;
  readonly header: readonly string[];
  readonly rows: readonly (readonly (string | number)[])[];
}

function format(value: number): string {
  if (!Number.isFinite(value)) return '-';
  if (Number.isInteger(value)) return value.toLocaleString('en-US');
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function formatRatio(ratio: number): string {
  return ratio < 0.1 ? ratio.toPrecision(2) : ratio.toFixed(2);
}

/** Prints a report as Markdown tables, ready to paste into docs/benchmarks.md. */
export function printReport(report: BenchReport, runs: number): void {
  const out: string[] = [`\n## ${report.title}\n`];
  out.push(
    `settings: ${Object.entries(report.settings)
      .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(', ')}\n`,
  );
  for (const section of report.sections) {
    if (section.title) out.push(`### ${section.title}\n`);
    const hasRatio = section.rows.some((r) => r.ratio !== undefined);
    out.push(
      `| what | unit | median of ${runs} | min | max |${hasRatio ? ' ratio to baseline |' : ''}`,
      `|---|---|--:|--:|--:|${hasRatio ? '--:|' : ''}`,
    );
    for (const r of section.rows) {
      const ratio = hasRatio ? ` ${r.ratio === undefined ? '' : formatRatio(r.ratio)} |` : '';
      const name = r.note ? `${r.name} (${r.note})` : r.name;
      out.push(
        `| ${name} | ${r.unit} | ${format(r.median)} | ${format(r.min)} | ${format(r.max)} |${ratio}`,
      );
    }
    out.push('');
  }
  for (const table of report.tables ?? []) {
    out.push(`### ${table.title}\n`, `| ${table.header.join(' | ')} |`);
    out.push(`|${table.header.map(() => '--:|').join('')}`);
    for (const row of table.rows) {
      out.push(`| ${row.map((v) => (typeof v === 'number' ? format(v) : v)).join(' | ')} |`);
    }
    out.push('');
  }
  for (const note of report.notes ?? []) out.push(`- ${note}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export function environment(): Record<string, unknown> {
  return {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadavg: loadavg(),
  };
}

export function writeJson(file: string, report: BenchReport, extra: Record<string, unknown>): void {
  writeFileSync(
    file,
    `${JSON.stringify({ ...report, date: new Date().toISOString(), ...extra }, null, 2)}\n`,
  );
}

/** Whether the module at `url` is the script node was started with. */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && url === pathToFileURL(process.argv[1]).href;
}

/**
 * Runs a benchmark as a script: parses the flags, prints the report, writes the JSON, and exits
 * non-zero on failure.
 */
export async function runStandalone(
  bench: (args: BenchArgs) => Promise<BenchReport>,
  args: BenchArgs = parseBenchArgs(),
): Promise<BenchReport> {
  const before = environment();
  const report = await bench(args);
  printReport(report, args.runs);
  if (args.json) {
    writeJson(args.json, report, {
      environment: before,
      loadavgAfter: loadavg(),
      args: { quick: args.quick, runs: args.runs },
    });
    progress(`figures written to ${args.json}`);
  }
  return report;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const cpu of cpus()) {
    const t = cpu.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
  }
  return { idle, total };
}

/** Share of the machine's CPU left idle over the next `ms` milliseconds. */
export async function idleShare(ms = 1000): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  return (b.idle - a.idle) / Math.max(1, b.total - a.total);
}

/**
 * Other engineers' test suites share these two cores. Before a timed run, wait (at most
 * `maxWaitMs`) until the machine is nearly idle, and report how idle it was, so that a noisy
 * figure can be told from a slow one.
 */
export async function waitForQuiet(minIdle = 0.85, maxWaitMs = quietMaxWaitMs): Promise<number> {
  if (maxWaitMs === 0) return Number.NaN;
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const idle = await idleShare(500);
    if (idle >= minIdle || Date.now() > deadline) {
      if (idle < minIdle)
        progress(`machine still busy (${Math.round(idle * 100)}% idle); measuring anyway`);
      return idle;
    }
  }
}

const cleanups = new Set<() => Promise<void>>();
let signalled = false;

/**
 * Registers what must be undone if the benchmark is interrupted (a schema, a queue): `finally`
 * blocks do not run on SIGINT. Returns the function that unregisters it.
 */
export function onInterrupt(cleanup: () => Promise<void>): () => void {
  cleanups.add(cleanup);
  if (process.listenerCount('SIGINT') === 0) {
    const handler = (signal: NodeJS.Signals) => {
      if (signalled) return;
      signalled = true;
      progress(`${signal}: cleaning up`);
      void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(130));
    };
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
  }
  return () => cleanups.delete(cleanup);
}
