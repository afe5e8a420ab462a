import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatTable, type ScenarioResult } from './fault-report.js';

/**
 * `npm run test:faults [-- name...]`: runs the fault suite's test files one after another (they
 * start private brokers and clusters and load two cores hard, so side by side they would slow
 * each other past their bounds), then prints one table of every scenario. Names filter the
 * files (`broker`, `network`, ...). Exits non-zero when a test failed or the run outlived its
 * deadline, after which the files' own exit hooks stop what they started.
 */

const DEADLINE_MS = 22 * 60_000;
const here = path.dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.test.js'))
  .filter((f) => filters.length === 0 || filters.some((name) => f.includes(name)))
  .sort()
  .map((f) => path.join(here, f));
if (files.length === 0) {
  console.error(`no fault test file matches ${filters.join(', ')}`);
  process.exit(2);
}

const report = path.join(os.tmpdir(), `outboxkit-faults-report-${process.pid}.jsonl`);
rmSync(report, { force: true });
const started = Date.now();
// A process group of its own, so that the deadline can signal the runner and its test files.
const child = spawn(
  process.execPath,
  ['--enable-source-maps', '--test', '--test-concurrency=1', ...files],
  {
    stdio: 'inherit',
    detached: true,
    env: { ...process.env, OUTBOXKIT_FAULTS_REPORT: report },
  },
);
let timedOut = false;
const deadline = setTimeout(() => {
  timedOut = true;
  console.error(`fault suite still running after ${DEADLINE_MS / 60_000} min: stopping it`);
  signalGroup('SIGTERM');
  setTimeout(() => signalGroup('SIGKILL'), 20_000).unref();
}, DEADLINE_MS);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => signalGroup(signal));
}

function signalGroup(signal: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Already gone.
  }
}

child.on('exit', (code, signal) => {
  clearTimeout(deadline);
  let results: ScenarioResult[] = [];
  try {
    results = readFileSync(report, 'utf8')
      .split('\n')
      .filter((line) => line.length > 0)
      .map((line) => JSON.parse(line) as ScenarioResult);
  } catch {
    // No scenario got as far as a result.
  }
  rmSync(report, { force: true });
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`\nFault suite: ${results.length} scenarios in ${minutes} min\n`);
  console.log(formatTable(results));
  const failed = results.filter((r) => !r.ok);
  for (const r of failed) console.log(`\nFAILED ${r.scenario}: ${r.failure ?? ''}`);
  const ok = code === 0 && !timedOut && failed.length === 0;
  if (!ok)
    console.log(`\nfault suite failed (exit ${code ?? signal}${timedOut ? ', deadline' : ''})`);
  process.exit(ok ? 0 : 1);
});
