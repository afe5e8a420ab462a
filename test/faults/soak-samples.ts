import { readdirSync, readFileSync } from 'node:fs';

/** One process generation at one sample. */
export interface ProcessSample {
  readonly label: string;
  readonly pid: number;
  /** Seconds since this generation started. */
  readonly age: number;
  /** Resident set, in kB (VmRSS). */
  readonly rssKb: number | null;
  readonly fds: number | null;
  /** Its Postgres sessions. */
  readonly backends: number | null;
  /** Its RabbitMQ connections and their channels. */
  readonly connections: number | null;
  readonly channels: number | null;
}

/** Everything sampled at one moment; null where the thing could not be asked (it was down). */
export interface Sample {
  /** Seconds since the traffic started. */
  readonly t: number;
  readonly processes: readonly ProcessSample[];
  /** Every session of the soak's application names: relays, consumers and the business. */
  readonly backends: number | null;
  readonly connections: number | null;
  readonly channels: number | null;
  /** Outbox rows waiting, and parked rows. */
  readonly outbox: number | null;
  readonly parked: number | null;
  /** Ready messages per queue (main and delay queues, dead-letter queues). */
  readonly queues: Readonly<Record<string, number | null>>;
  readonly committed: number;
}

/** VmRSS of a process in kB, from /proc; null when it is gone. */
export function rssKb(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

/** Open file descriptors of a process, from /proc; null when it is gone. */
export function openFds(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** Connections and channels of one client process, keyed by its pid. */
export interface BrokerClients {
  readonly connections: number;
  readonly channels: number;
  readonly byPid: ReadonlyMap<number, { connections: number; channels: number }>;
}

/**
 * Reads `rabbitmqctl list_connections client_properties channels --formatter json`: outboxkit
 * names its connections `outboxkit-relay-<pid>-<n>` and `outboxkit-consumer-<pid>-<n>`, which
 * tells whose each one is without the management plugin.
 */
export function parseConnections(json: string): BrokerClients {
  const rows = JSON.parse(json) as Array<{ client_properties: unknown; channels: number }>;
  const byPid = new Map<number, { connections: number; channels: number }>();
  let channels = 0;
  for (const row of rows) {
    channels += Number(row.channels) || 0;
    const match = /outboxkit-(?:relay|consumer)-(\d+)-/.exec(JSON.stringify(row.client_properties));
    if (!match) continue;
    const pid = Number(match[1]);
    const entry = byPid.get(pid) ?? { connections: 0, channels: 0 };
    entry.connections += 1;
    entry.channels += Number(row.channels) || 0;
    byPid.set(pid, entry);
  }
  return { connections: rows.length, channels, byPid };
}

/** What may grow, and by how much, from the first third's highest to the last third's median. */
export interface Tolerance {
  /** Allowed growth as a fraction of the first third's highest, plus an absolute allowance. */
  readonly ratio: number;
  readonly absolute: number;
}

/**
 * Growth allowed from the first third's highest to the last third's median. A leak that adds up with
 * each reconnect outgrows these within minutes; warm-up (V8 compiling, pools filling) does not.
 */
export const TOLERANCES = {
  rssKb: { ratio: 0.25, absolute: 16 * 1024 },
  fds: { ratio: 0, absolute: 4 },
  backends: { ratio: 0, absolute: 2 },
  connections: { ratio: 0, absolute: 1 },
  channels: { ratio: 0, absolute: 2 },
} as const satisfies Record<string, Tolerance>;

export type Metric = keyof typeof TOLERANCES;

/**
 * Fewer samples than this (after the warm-up): too short to tell a trend. With 6, a third was
 * two samples, which a pool refilling after a Postgres fault could fill on its own.
 */
export const MIN_SAMPLES_FOR_TREND = 12;

/**
 * A process's first minute is left out of its trend: V8 grows its heap to a plateau and the
 * pools fill (a relay goes from about 65 to 98 MiB in that minute, and the soak's sessions from
 * 18 to 24, measured here), which is warm-up, not a leak. A run of a minute (CI's) therefore
 * checks no trend; the long runs do.
 */
export const WARM_UP_SECONDS = 60;

export interface Trend {
  /** A process generation, or `all` for the soak's totals. */
  readonly who: string;
  readonly metric: Metric;
  readonly samples: number;
  readonly first: number;
  readonly last: number;
  readonly limit: number;
  readonly ok: boolean;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The highest value of the first third of `values` against the median of the last third
 * (nulls, samples taken while the thing was down, left out), and whether the growth stays
 * within the tolerance. The first third's highest, not its median: a pool emptied by a Postgres
 * fault refills within seconds, and a dip sampled early made a relay whose sessions and
 * descriptors never went above its pool's size look as if they grew (the 30-minute run of
 * seed 4225517883, relay0#3: 3.5 to 6 sessions, 20 to 26 descriptors). The last third's
 * median: a sample taken in the middle of a fault (a reconnect storm) is an outlier, not a
 * trend. A leak still shows, as a level the process never reached in its first third.
 */
export function trendOf(
  who: string,
  metric: Metric,
  values: readonly (number | null)[],
): Trend | undefined {
  const present = values.filter((v): v is number => v !== null);
  if (present.length < MIN_SAMPLES_FOR_TREND) return undefined;
  const third = Math.floor(present.length / 3);
  const first = Math.max(...present.slice(0, third));
  const last = median(present.slice(-third));
  const tolerance: Tolerance = TOLERANCES[metric];
  const limit = first * (1 + tolerance.ratio) + tolerance.absolute;
  return { who, metric, samples: present.length, first, last, limit, ok: last <= limit };
}

/**
 * The trends of every process generation that lived long enough past its warm-up, and of the
 * soak's totals past the run's first minute (the pools fill while the traffic starts).
 */
export function trendsOf(samples: readonly Sample[]): Trend[] {
  const trends: Trend[] = [];
  const labels = [...new Set(samples.flatMap((s) => s.processes.map((p) => p.label)))];
  const perProcess: Metric[] = ['rssKb', 'fds', 'backends', 'connections', 'channels'];
  for (const label of labels) {
    const mine = samples.flatMap((s) =>
      s.processes.filter((p) => p.label === label && p.age >= WARM_UP_SECONDS),
    );
    for (const metric of perProcess) {
      const trend = trendOf(
        label,
        metric,
        mine.map((p) => p[metric]),
      );
      if (trend) trends.push(trend);
    }
  }
  for (const metric of ['backends', 'connections', 'channels'] as const) {
    const trend = trendOf(
      'all',
      metric,
      samples.filter((s) => s.t >= WARM_UP_SECONDS).map((s) => s[metric]),
    );
    if (trend) trends.push(trend);
  }
  return trends;
}
