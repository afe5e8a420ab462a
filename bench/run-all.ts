/**
 * Runs every benchmark in turn with the same flags and prints their tables; `--json FILE`
 * writes all figures to one file. `--only a,b` picks benchmarks by name.
 *
 *   npm run bench -- [--quick] [--json FILE] [--runs 3] [--only relay-drain,confirm-modes]
 */
import { loadavg } from 'node:os';
import { backlog } from './backlog.js';
import { claimHeadCheck } from './claim-head-check.js';
import { claimStrategy } from './claim-strategy.js';
import { confirmModes } from './confirm-modes.js';
import { consumer } from './consumer.js';
import { endToEnd } from './end-to-end.js';
import { hotKey } from './hot-key.js';
import { naiveRelay } from './naive-relay.js';
import { partitions } from './partitions.js';
import { pgTransactionalOutbox } from './pg-transactional-outbox.js';
import { relayDrain } from './relay-drain.js';
import { steadyState } from './steady-state.js';
import {
  type BenchArgs,
  type BenchReport,
  environment,
  listFlag,
  parseBenchArgs,
  printReport,
  progress,
  writeJson,
} from './support/bench-cli.js';
import { writerOverhead } from './writer-overhead.js';

const benchmarks: Record<string, (args: BenchArgs) => Promise<BenchReport>> = {
  'relay-drain': relayDrain,
  'claim-strategy': claimStrategy,
  'confirm-modes': confirmModes,
  'naive-relay': naiveRelay,
  'pg-transactional-outbox': pgTransactionalOutbox,
  'writer-overhead': writerOverhead,
  'steady-state': steadyState,
  backlog,
  consumer,
  partitions,
  'end-to-end': endToEnd,
  'hot-key': hotKey,
  'claim-head-check': claimHeadCheck,
};

const args = parseBenchArgs();
const only = listFlag(args, 'only', Object.keys(benchmarks));
const unknown = only.filter((name) => !(name in benchmarks));
if (unknown.length > 0) throw new Error(`unknown benchmarks: ${unknown.join(', ')}`);
const started = performance.now();
const before = environment();
const reports: BenchReport[] = [];
for (const name of only) {
  progress(`=== ${name}`);
  const report = await benchmarks[name]!(args);
  printReport(report, args.runs);
  reports.push(report);
}
if (args.json) {
  writeJson(
    args.json,
    { benchmark: 'all', title: 'all benchmarks', settings: {}, sections: [] },
    { environment: before, loadavgAfter: loadavg(), reports },
  );
}
progress(`all done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
