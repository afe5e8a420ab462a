import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Everything the fault suite starts outside its own process (private RabbitMQ nodes, private
 * Postgres clusters, relay processes) is registered here, so that it is stopped however the
 * suite ends: by the scenario's `finally`, by an exit hook when the test process exits or is
 * signalled, or, after a crash that ran no hook at all, by the next run (`reapLeftovers`).
 */

/** Parent of every run's directory; one directory per test process. */
const ROOT = path.join(os.tmpdir(), 'outboxkit-faults');

interface Registered {
  readonly pid: number;
  /** Text that must appear in the process's command line or environment before it is signalled, so a reused pid is never hit. */
  readonly marker: string;
  readonly signal: NodeJS.Signals;
}

let runDir: string | undefined;
const registered = new Map<number, Registered>();
const exitTasks = new Set<() => void>();

/** This test process's directory (created on first use), with the exit hooks installed. */
export function faultRunDir(): string {
  if (runDir) return runDir;
  const dir = path.join(ROOT, `run-${process.pid}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(path.join(dir, 'owner'), `${process.pid}\n${processStart(process.pid) ?? ''}\n`);
  runDir = dir;
  installExitHooks();
  return dir;
}

/** A fresh directory inside this run's directory, readable by the service users. */
export function ownedDir(kind: string): string {
  const dir = path.join(faultRunDir(), `${kind}-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  return dir;
}

/** Signals `pid` at exit unless `unregisterProcess` ran first. */
export function registerProcess(pid: number, marker: string, signal: NodeJS.Signals): void {
  registered.set(pid, { pid, marker, signal });
  persist();
}

export function unregisterProcess(pid: number): void {
  if (registered.delete(pid)) persist();
}

/** A synchronous task for the exit hook (an exit handler cannot wait for promises). */
export function onFaultExit(task: () => void): () => void {
  exitTasks.add(task);
  return () => exitTasks.delete(task);
}

function persist(): void {
  const dir = faultRunDir();
  writeFileSync(path.join(dir, 'processes.json'), JSON.stringify([...registered.values()]));
}

let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', runExitCleanup);
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.once(signal, () => {
      runExitCleanup();
      process.exit(code);
    });
  }
}

/** Kills what is still registered and removes this run's directory; synchronous, idempotent. */
export function runExitCleanup(): void {
  for (const task of exitTasks) {
    try {
      task();
    } catch {
      // Best effort: the rest must still run.
    }
  }
  exitTasks.clear();
  for (const p of registered.values()) signalIfMarked(p);
  registered.clear();
  if (runDir) rmSync(runDir, { recursive: true, force: true, maxRetries: 3 });
  runDir = undefined;
}

/**
 * Stops what runs of this suite left behind when they died without their hooks (SIGKILL, OOM,
 * a power cut): processes registered by a test process that no longer exists, and their
 * directories. Runs that are still alive are left alone, so two runs can share the machine.
 */
export async function reapLeftovers(): Promise<number> {
  let reaped = 0;
  let entries: string[];
  try {
    entries = readdirSync(ROOT);
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const dir = path.join(ROOT, entry);
    if (dir === runDir || !entry.startsWith('run-')) continue;
    const owner = readText(path.join(dir, 'owner'))?.split('\n');
    const ownerPid = Number(owner?.[0]);
    if (Number.isSafeInteger(ownerPid) && ownerPid > 0) {
      const start = processStart(ownerPid);
      // Alive and the same process (not a reused pid): another run in progress.
      if (start !== undefined && start === (owner?.[1] ?? '')) continue;
    }
    const list = readText(path.join(dir, 'processes.json'));
    const processes: Registered[] = list ? (JSON.parse(list) as Registered[]) : [];
    for (const p of processes) {
      // Postgres shuts down at once on SIGQUIT; anything else is killed outright.
      if (signalIfMarked(p)) reaped += 1;
    }
    const deadline = Date.now() + 10_000;
    while (processes.some((p) => isMarked(p)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const p of processes) if (isMarked(p)) signalIfMarked({ ...p, signal: 'SIGKILL' });
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  }
  return reaped;
}

function signalIfMarked(p: Registered): boolean {
  if (!isMarked(p)) return false;
  try {
    process.kill(p.pid, p.signal);
    return true;
  } catch {
    return false;
  }
}

/** The process exists and carries the marker (in its command line or environment). */
function isMarked(p: Registered): boolean {
  const cmdline = readText(`/proc/${p.pid}/cmdline`);
  if (cmdline === undefined) return false;
  if (cmdline.includes(p.marker)) return true;
  return readText(`/proc/${p.pid}/environ`)?.includes(p.marker) ?? false;
}

/** The process's start time in clock ticks since boot, which tells a reused pid apart. */
function processStart(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name in parentheses may contain spaces: count fields after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
