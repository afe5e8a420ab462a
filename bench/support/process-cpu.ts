import { readdirSync, readFileSync } from 'node:fs';

/** CPU time used so far, in microseconds, by this process and by the two servers. */
export interface CpuSnapshot {
  readonly node: number;
  readonly postgres: number;
  readonly rabbitmq: number;
}

/** Clock ticks of /proc/<pid>/stat; 100 per second on Linux builds of this kind. */
const TICK_US = 10_000;

/**
 * Sums the CPU time of every process whose command name starts with `postgres` or `beam`
 * (RabbitMQ's Erlang VM), and this process's own. On a machine without /proc, or servers on
 * another host, the server figures stay 0: the bench then reports Node's share only.
 */
export function cpuSnapshot(): CpuSnapshot {
  let postgres = 0;
  let rabbitmq = 0;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    // not Linux: servers unknown
  }
  for (const pid of pids) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (!comm.startsWith('postgres') && !comm.startsWith('beam')) continue;
      // Fields after the command name: utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      if (comm.startsWith('postgres')) postgres += ticks * TICK_US;
      else rabbitmq += ticks * TICK_US;
    } catch {
      // the process ended between listing and reading
    }
  }
  const own = process.cpuUsage();
  return { node: own.user + own.system, postgres, rabbitmq };
}

/** CPU microseconds per message of each side between two snapshots. */
export function cpuPerMessage(from: CpuSnapshot, to: CpuSnapshot, messages: number): CpuSnapshot {
  return {
    node: (to.node - from.node) / messages,
    // A backend that exits between snapshots takes its ticks along: never report less than 0.
    postgres: Math.max(0, to.postgres - from.postgres) / messages,
    rabbitmq: Math.max(0, to.rabbitmq - from.rabbitmq) / messages,
  };
}
