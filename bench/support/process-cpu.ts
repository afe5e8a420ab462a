import { readdirSync, readFileSync } from 'node:fs';
import { type Measurement, measurement } from './bench-cli.js';

/** CPU time used so far, in microseconds, by this process and by the two servers. */
export interface CpuSnapshot {
  readonly node: number;
  readonly postgres: number;
  readonly rabbitmq: number;
  /**
   * Each server process's own total, so that a difference counts only processes alive at its
   * end: a backend that exits in between (a pool's idle client closed after its timeout) would
   * otherwise take its whole lifetime's CPU off the sum.
   */
  readonly servers?: ReadonlyMap<
    number,
    { readonly side: 'postgres' | 'rabbitmq'; readonly us: number }
  >;
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's times, on every architecture Node runs on. */
export const CLOCK_TICKS = 100;

/** The ids of the processes now running; none where there is no /proc (not Linux). */
export function processIds(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * /proc/PID/stat's fields from the state on (field 3), so index 0 is the state, 1 the ppid,
 * 11 and 12 utime and stime; undefined when the process is gone.
 */
export function procStat(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may contain spaces: split after it.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Sums the CPU time of every process whose command name starts with `postgres` or `beam`
 * (RabbitMQ's Erlang VM), and this process's own. On a machine without /proc, or servers on
 * another host, the server figures stay 0: the bench then reports Node's share only.
 */
export function cpuSnapshot(): CpuSnapshot {
  let postgres = 0;
  let rabbitmq = 0;
  const servers = new Map<number, { side: 'postgres' | 'rabbitmq'; us: number }>();
  for (const pid of processIds()) {
    let comm: string;
    try {
      comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      continue; // ended between listing and reading
    }
    if (!comm.startsWith('postgres') && !comm.startsWith('beam')) continue;
    const stat = procStat(pid);
    if (!stat) continue;
    const us = ((Number(stat[11]) + Number(stat[12])) * 1_000_000) / CLOCK_TICKS;
    const side = comm.startsWith('postgres') ? 'postgres' : 'rabbitmq';
    if (side === 'postgres') postgres += us;
    else rabbitmq += us;
    servers.set(pid, { side, us });
  }
  const own = process.cpuUsage();
  return { node: own.user + own.system, postgres, rabbitmq, servers };
}

/** CPU microseconds per message of each side between two snapshots. */
export function cpuPerMessage(from: CpuSnapshot, to: CpuSnapshot, messages: number): CpuSnapshot {
  if (from.servers && to.servers) {
    // Processes alive at the end, each from its first reading (0 when it started in between).
    const used = { postgres: 0, rabbitmq: 0 };
    for (const [pid, { side, us }] of to.servers) {
      const before = from.servers.get(pid);
      // A lower total than before is another process under a reused pid.
      const start = before && before.side === side && before.us <= us ? before.us : 0;
      used[side] += us - start;
    }
    return {
      node: (to.node - from.node) / messages,
      postgres: used.postgres / messages,
      rabbitmq: used.rabbitmq / messages,
    };
  }
  return {
    node: (to.node - from.node) / messages,
    // A backend that exits between snapshots takes its ticks along: never report less than 0.
    postgres: Math.max(0, to.postgres - from.postgres) / messages,
    rabbitmq: Math.max(0, to.rabbitmq - from.rabbitmq) / messages,
  };
}

/** CPU time used so far by process `pid` (all its threads), in microseconds; 0 once it is gone. */
export function processCpuUs(pid: number): number {
  const stat = procStat(pid);
  return stat ? ((Number(stat[11]) + Number(stat[12])) * 1_000_000) / CLOCK_TICKS : 0;
}

/** The machine's CPU time so far, from /proc/stat, in ticks summed over every core. */
export interface MachineCpu {
  /** Running anything: user, nice, system, irq, softirq, steal. */
  readonly busy: number;
  /** Idle, waiting on I/O included. */
  readonly idle: number;
  /** The part of `idle` spent waiting on I/O with a request outstanding. */
  readonly iowait: number;
}

/** Zeros where there is no /proc/stat (not Linux). */
export function machineCpu(): MachineCpu {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  } catch {
    return { busy: 0, idle: 0, iowait: 0 };
  }
  // cpu user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line!
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map(Number) as [number, number, number, number, number, number, number, number];
  return {
    busy: user + nice + system + irq + softirq + (steal ?? 0),
    idle: idle + iowait,
    iowait,
  };
}

/** Share of the machine's CPU time between two readings that ran something (0 to 1). */
export function busyShare(from: MachineCpu, to: MachineCpu): number {
  const busy = to.busy - from.busy;
  return busy / Math.max(1, busy + to.idle - from.idle);
}

/** One table row per process (median, min, max over the runs) of a side's CPU per message. */
export function cpuMeasurements(label: string, samples: readonly CpuSnapshot[]): Measurement[] {
  return (['node', 'postgres', 'rabbitmq'] as const).map((side) =>
    measurement(
      `${label}: ${side === 'node' ? 'Node (this process)' : side}`,
      'CPU µs/msg',
      samples.map((c) => c[side]),
    ),
  );
}
