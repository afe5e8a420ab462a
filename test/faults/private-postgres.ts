import { chownSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { freePort, isAlive, runAs, waitForExit } from './exec.js';
import { ownedDir, registerProcess, unregisterProcess } from './fault-processes.js';
import { userIds } from './private-rabbitmq.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const USER = 'postgres';

/**
 * A Postgres cluster of the suite's own (`initdb` into a fresh directory, its own port and socket
 * directory), run as the `postgres` user, so that restarting or crashing it disturbs nobody.
 */
export class PrivatePostgres {
  readonly port: number;
  readonly dir: string;
  #pid: number | undefined;

  private constructor(port: number, dir: string) {
    this.port = port;
    this.dir = dir;
  }

  static async start(): Promise<PrivatePostgres> {
    const dir = ownedDir('postgres');
    const { uid, gid } = userIds(USER);
    chownSync(dir, uid, gid);
    const cluster = new PrivatePostgres(await freePort(), dir);
    try {
      await runAs(USER, `${PG_BIN}/initdb`, ['-D', cluster.dataDir, '-A', 'trust', '-U', USER], {
        env: { LANG: 'C.UTF-8' },
        timeoutMs: 120_000,
      });
      await cluster.boot();
    } catch (error) {
      await cluster.destroy();
      throw error;
    }
    return cluster;
  }

  get dataDir(): string {
    return path.join(this.dir, 'data');
  }

  /** A connection URL; `applicationName` tells the suite's sessions apart in pg_stat_activity. */
  url(applicationName?: string, database = 'postgres'): string {
    const url = new URL(`postgres://postgres@127.0.0.1:${this.port}/${database}`);
    if (applicationName) url.searchParams.set('application_name', applicationName);
    return url.toString();
  }

  /** Starts the cluster and resolves once it accepts connections. */
  async boot(): Promise<void> {
    const options = [
      `-p ${this.port}`,
      `-k ${this.dir}`,
      '-c listen_addresses=127.0.0.1',
      // A process crash keeps what was written to the OS, and the machine does not crash here:
      // skipping fsync keeps the suite quick without changing what a restart can lose.
      '-c fsync=off',
      '-c max_connections=200',
    ].join(' ');
    await runAs(
      USER,
      `${PG_BIN}/pg_ctl`,
      [
        '-D',
        this.dataDir,
        '-o',
        options,
        '-l',
        path.join(this.dir, 'log'),
        '-w',
        '-t',
        '60',
        'start',
      ],
      { timeoutMs: 90_000 },
    );
    const pid = Number(
      readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    this.#pid = pid;
    // SIGQUIT: immediate shutdown, the postmaster takes its backends with it.
    registerProcess(pid, this.dataDir, 'SIGQUIT');
  }

  /** `fast` rolls back open transactions and closes sessions; `immediate` is a crash (recovery at start). */
  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    const pid = this.#pid;
    if (pid === undefined) return;
    await runAs(
      USER,
      `${PG_BIN}/pg_ctl`,
      ['-D', this.dataDir, '-m', mode, '-w', '-t', '60', 'stop'],
      {
        timeoutMs: 90_000,
      },
    ).catch(async (error: unknown) => {
      if (isAlive(pid)) throw error;
    });
    await waitForExit(pid, 10_000);
    unregisterProcess(pid);
    this.#pid = undefined;
  }

  async restart(mode: 'fast' | 'immediate'): Promise<void> {
    await this.stop(mode);
    await this.boot();
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(path.join(this.dir, 'log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  async destroy(): Promise<void> {
    await this.stop('immediate').catch(() => {});
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}
