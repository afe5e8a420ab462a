import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { freePort, isAlive, run, runAs, waitForExit } from '../../test/faults/exec.js';
import { userIds } from '../../test/faults/private-rabbitmq.js';
import { onInterrupt, progress } from './bench-cli.js';
import { CLOCK_TICKS, processIds, procStat } from './process-cpu.js';

/** The OS user Postgres runs as when the benchmark runs as root (Postgres refuses root). */
const SERVICE_USER = 'postgres';

/**
 * Settings of the machine's cluster that name its files, port, socket, logs or identity, or that
 * logical decoding needs set otherwise: never copied into the private cluster.
 */
const NOT_COPIED =
  /^(port|listen_addresses|unix_socket_|cluster_name|external_pid_file|data_directory|hba_file|ident_file|config_file|ssl|log_|wal_level|max_wal_senders|max_replication_slots)/i;

/** What logical decoding needs, plus the durability the stock cluster has, stated explicitly. */
const LOGICAL_SETTINGS: Readonly<Record<string, string>> = {
  wal_level: 'logical',
  max_replication_slots: '10',
  max_wal_senders: '10',
  fsync: 'on',
  synchronous_commit: 'on',
};

/** A Postgres cluster with `wal_level=logical`: the machine's own, or one started for the benchmark. */
export interface LogicalCluster {
  /** Connection URL of a database in it, for a superuser. */
  readonly url: string;
  /** True when the benchmark started it (and `close()` deletes it). */
  readonly private: boolean;
  /** Settings it was started with beyond initdb's defaults (empty for the machine's cluster). */
  readonly settings: Readonly<Record<string, string>>;
  /**
   * CPU time (user + system, ms) its server processes have used so far, exited backends
   * included; undefined for the machine's cluster, whose other clients would be counted too.
   */
  cpuMs(): number | undefined;
  close(): Promise<void>;
}

/**
 * The machine's cluster when its `wal_level` is already `logical`; otherwise a private one:
 * `initdb` into a fresh temporary directory, its own port and socket directory, the machine's
 * configured settings (so that durability and memory match the cluster the other benchmarks
 * use) plus `wal_level=logical`. It is stopped and deleted by `close()`, on Ctrl-C, and, should
 * the process die another way, by an exit hook.
 */
export async function openLogicalCluster(
  machine: pg.Pool,
  machineUrl: string,
): Promise<LogicalCluster> {
  const { rows } = await machine.query<{ wal_level: string; major: number }>(
    "SELECT current_setting('wal_level') AS wal_level, current_setting('server_version_num')::int / 10000 AS major",
  );
  const { wal_level: walLevel, major } = rows[0]!;
  if (walLevel === 'logical') {
    return {
      url: machineUrl,
      private: false,
      settings: {},
      cpuMs: () => undefined,
      close: async () => {},
    };
  }
  const copied = await configuredSettings(machine);
  return PrivateLogicalCluster.start(binDir(major), { ...copied, ...LOGICAL_SETTINGS });
}

/** The machine cluster's settings from its configuration files, minus those in `NOT_COPIED`. */
async function configuredSettings(pool: pg.Pool): Promise<Record<string, string>> {
  const { rows } = await pool.query<{ name: string; value: string }>(
    "SELECT name, current_setting(name) AS value FROM pg_settings WHERE source = 'configuration file' ORDER BY name",
  );
  return Object.fromEntries(
    rows.filter((r) => !NOT_COPIED.test(r.name)).map((r) => [r.name, r.value]),
  );
}

/** `PG_BIN`, else the Debian layout's binaries of the machine server's major version, else the newest. */
function binDir(major: number): string {
  if (process.env['PG_BIN']) return process.env['PG_BIN'];
  const root = '/usr/lib/postgresql';
  const same = path.join(root, String(major), 'bin');
  if (existsSync(path.join(same, 'initdb'))) return same;
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions[0] === undefined) {
    throw new Error(
      `no initdb found under ${root}: install PostgreSQL's server package or set PG_BIN to its bin directory`,
    );
  }
  return path.join(root, versions[0], 'bin');
}

class PrivateLogicalCluster implements LogicalCluster {
  readonly private = true;
  readonly url: string;
  readonly settings: Readonly<Record<string, string>>;
  readonly #dir: string;
  readonly #bin: string;
  #pid: number | undefined;
  #forgetInterrupt: () => void = () => {};
  readonly #onExit = () => this.#killSync();

  private constructor(dir: string, bin: string, port: number, settings: Record<string, string>) {
    this.#dir = dir;
    this.#bin = bin;
    this.settings = settings;
    this.url = `postgres://${SERVICE_USER}@127.0.0.1:${port}/postgres`;
  }

  static async start(
    bin: string,
    settings: Record<string, string>,
  ): Promise<PrivateLogicalCluster> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'outboxkit-bench-pg-'));
    if (asRoot()) {
      const { uid, gid } = userIds(SERVICE_USER);
      chownSync(dir, uid, gid);
    }
    const port = await freePort();
    const cluster = new PrivateLogicalCluster(dir, bin, port, settings);
    process.on('exit', cluster.#onExit);
    cluster.#forgetInterrupt = onInterrupt(() => cluster.close());
    try {
      await cluster.#initdb(port);
      await cluster.#boot();
    } catch (error) {
      await cluster.close();
      throw new Error(`private Postgres cluster did not start; its log:\n${cluster.#logTail()}`, {
        cause: error,
      });
    }
    progress(`private Postgres cluster (wal_level=logical) on port ${port}`);
    return cluster;
  }

  get #dataDir(): string {
    return path.join(this.#dir, 'data');
  }

  async #initdb(port: number): Promise<void> {
    await service(
      path.join(this.#bin, 'initdb'),
      ['-D', this.#dataDir, '-A', 'trust', '-U', SERVICE_USER],
      { LANG: 'C.UTF-8' },
      120_000,
    );
    // In the configuration file rather than on pg_ctl's command line, which a shell splits.
    const lines = Object.entries({
      ...this.settings,
      port: String(port),
      listen_addresses: '127.0.0.1',
      unix_socket_directories: this.#dir,
    }).map(([name, value]) => `${name} = '${value.replaceAll("'", "''")}'`);
    appendFileSync(
      path.join(this.#dataDir, 'postgresql.conf'),
      `\n# benchmark settings\n${lines.join('\n')}\n`,
    );
  }

  async #boot(): Promise<void> {
    await service(
      path.join(this.#bin, 'pg_ctl'),
      ['-D', this.#dataDir, '-l', path.join(this.#dir, 'log'), '-w', '-t', '60', 'start'],
      {},
      90_000,
    );
    this.#pid = Number(
      readFileSync(path.join(this.#dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    );
  }

  cpuMs(): number | undefined {
    const pid = this.#pid;
    if (pid === undefined) return undefined;
    const postmaster = procStat(pid);
    if (!postmaster) return undefined;
    // utime, stime, and the children's it has reaped (cutime, cstime): fields 14-17.
    let ticks = postmaster.slice(11, 15).reduce((a, b) => a + Number(b), 0);
    for (const entry of processIds()) {
      const stat = procStat(entry);
      if (stat && Number(stat[1]) === pid) ticks += Number(stat[11]) + Number(stat[12]);
    }
    return ticks * (1000 / CLOCK_TICKS);
  }

  #logTail(): string {
    try {
      return readFileSync(path.join(this.#dir, 'log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Stops the cluster at once (its data is thrown away) and deletes its directory. */
  async close(): Promise<void> {
    this.#forgetInterrupt();
    const pid = this.#pid;
    if (pid !== undefined && isAlive(pid)) {
      await service(
        path.join(this.#bin, 'pg_ctl'),
        ['-D', this.#dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'],
        {},
        40_000,
      ).catch(() => {
        if (isAlive(pid)) process.kill(pid, 'SIGQUIT');
      });
      await waitForExit(pid, 10_000);
    }
    this.#pid = undefined;
    rmSync(this.#dir, { recursive: true, force: true, maxRetries: 3 });
    process.off('exit', this.#onExit);
  }

  /** For the exit hook, which cannot wait: SIGQUIT is Postgres's immediate shutdown. */
  #killSync(): void {
    const pid = this.#pid;
    if (pid !== undefined && isAlive(pid)) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // Gone already.
      }
    }
    rmSync(this.#dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

function asRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Runs a Postgres binary as the service user when root, else as the current user. */
function service(
  command: string,
  args: readonly string[],
  env: Record<string, string>,
  timeoutMs: number,
): Promise<string> {
  return asRoot()
    ? runAs(SERVICE_USER, command, args, { env, timeoutMs })
    : run(command, args, { env: { ...process.env, ...env }, timeoutMs });
}
