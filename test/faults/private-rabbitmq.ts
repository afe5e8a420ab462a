import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { waitFor } from '../support/wait-for.js';
import { freePort, isAlive, runAs, sleep, waitForExit } from './exec.js';
import { ownedDir, registerProcess, unregisterProcess } from './fault-processes.js';

const RABBITMQ_BIN = '/usr/lib/rabbitmq/bin';
const USER = 'rabbitmq';
/** Where the machine's node keeps its Erlang cookie: the CLI must present the same one. */
const HOME = '/var/lib/rabbitmq';
const BOOT_TIMEOUT_MS = 90_000;

export interface PrivateRabbitMqOptions {
  /** Extra `rabbitmq.conf` settings, e.g. `{ max_message_size: 65536 }`. */
  readonly config?: Readonly<Record<string, string | number>>;
}

/**
 * A RabbitMQ node of the suite's own, beside the machine's: its own node name, ports, data, log
 * and pid file, and a config file of its own (the machine's would bind the machine's port), run
 * as the `rabbitmq` user. Killing, hanging or restarting it disturbs nobody else.
 */
export class PrivateRabbitMq {
  readonly nodeName: string;
  readonly port: number;
  readonly distPort: number;
  readonly dir: string;
  #pid: number | undefined;

  private constructor(nodeName: string, port: number, distPort: number, dir: string) {
    this.nodeName = nodeName;
    this.port = port;
    this.distPort = distPort;
    this.dir = dir;
  }

  static async start(options: PrivateRabbitMqOptions = {}): Promise<PrivateRabbitMq> {
    const dir = ownedDir('rabbitmq');
    const port = await freePort();
    let distPort = await freePort();
    while (distPort === port) distPort = await freePort();
    const node = new PrivateRabbitMq(
      `okfaults-${path.basename(dir)}@localhost`,
      port,
      distPort,
      dir,
    );
    mkdirSync(path.join(dir, 'mnesia'));
    mkdirSync(path.join(dir, 'log'));
    // No plugins: the management plugin would take the machine's management port.
    writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    const config = {
      'listeners.tcp.1': `127.0.0.1:${port}`,
      // Plenty of headroom on a shared machine; alarms are raised on purpose only.
      'disk_free_limit.absolute': '50MB',
      'log.console': 'false',
      'log.file.level': 'info',
      ...options.config,
    };
    writeFileSync(
      path.join(dir, 'rabbitmq.conf'),
      `${Object.entries(config)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n')}\n`,
    );
    // An empty env file: the machine's would set the machine's node name.
    writeFileSync(path.join(dir, 'rabbitmq-env.conf'), '');
    chownRecursive(dir, USER);
    try {
      await node.boot();
    } catch (error) {
      await node.destroy();
      throw error;
    }
    return node;
  }

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  /** The beam process's pid while it runs. */
  get pid(): number | undefined {
    return this.#pid;
  }

  #env(): Record<string, string> {
    const d = this.dir;
    return {
      HOME,
      RABBITMQ_NODENAME: this.nodeName,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(d, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(d, 'log'),
      RABBITMQ_PID_FILE: path.join(d, 'pid'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(d, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: path.join(d, 'rabbitmq.conf'),
      RABBITMQ_CONF_ENV_FILE: path.join(d, 'rabbitmq-env.conf'),
    };
  }

  /** Starts the node and resolves once it serves AMQP. */
  async boot(): Promise<void> {
    if (this.#pid !== undefined && isAlive(this.#pid)) return;
    rmSync(path.join(this.dir, 'pid'), { force: true });
    await runAs(USER, `${RABBITMQ_BIN}/rabbitmq-server`, ['-detached'], {
      env: this.#env(),
      cwd: this.dir,
    });
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    for (;;) {
      const pid = this.#readPid();
      if (pid !== undefined && this.#pid !== pid) {
        this.#pid = pid;
        registerProcess(pid, this.dir, 'SIGKILL');
      }
      if (await amqpAnswers(this.port)) return;
      if (Date.now() > deadline || (this.#pid !== undefined && !isAlive(this.#pid))) {
        throw new Error(`private RabbitMQ ${this.nodeName} did not start:\n${this.logTail()}`);
      }
      await sleep(100);
    }
  }

  #readPid(): number | undefined {
    try {
      const pid = Number(readFileSync(path.join(this.dir, 'pid'), 'utf8').trim());
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** A graceful stop: SIGTERM makes the Erlang VM shut RabbitMQ down in order, as `rabbitmqctl stop` does. */
  async stop(): Promise<void> {
    const pid = this.#pid;
    if (pid === undefined) return;
    this.resume();
    process.kill(pid, 'SIGTERM');
    if (!(await waitForExit(pid, 60_000))) process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 10_000);
    this.#forget(pid);
  }

  /** `kill -9` of the beam process: no shutdown, no goodbye to clients. */
  async kill(): Promise<void> {
    const pid = this.#pid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 10_000);
    this.#forget(pid);
  }

  #forget(pid: number): void {
    unregisterProcess(pid);
    if (this.#pid === pid) this.#pid = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.boot();
  }

  /** SIGSTOP: the node keeps its sockets open and answers nothing, heartbeats included. */
  suspend(): void {
    if (this.#pid !== undefined) process.kill(this.#pid, 'SIGSTOP');
  }

  resume(): void {
    if (this.#pid !== undefined && isAlive(this.#pid)) process.kill(this.#pid, 'SIGCONT');
  }

  /** Ready and unacked messages and consumers of `queues`, one line each. */
  async queueState(queues: readonly string[]): Promise<string> {
    const table = await this.ctl(
      'list_queues',
      '-q',
      'name',
      'messages_ready',
      'messages_unacknowledged',
      'consumers',
    );
    return table
      .split('\n')
      .filter((line) => queues.some((q) => line.startsWith(`${q}\t`)))
      .join('; ');
  }

  /** Runs `rabbitmqctl -n <node> ...args`. */
  ctl(...args: string[]): Promise<string> {
    return runAs(USER, `${RABBITMQ_BIN}/rabbitmqctl`, ['-n', this.nodeName, ...args], {
      env: { HOME },
      timeoutMs: 60_000,
    });
  }

  /**
   * Suspends the Raft server of quorum queue `queue` (`sys:suspend`): the queue stops answering
   * while the node, its connections and its other queues carry on. Publishes to it get no
   * confirm, and consuming from it, cancelling and closing its channels wait for it.
   */
  async suspendQueue(queue: string): Promise<void> {
    await this.#evalOk(`sys:suspend(whereis(${raServerName(queue)})).`);
  }

  async resumeQueue(queue: string): Promise<void> {
    await this.#evalOk(`sys:resume(whereis(${raServerName(queue)})).`);
  }

  /**
   * Waits up to `waitMs` for each quorum queue in `queues` to have a leader, then triggers an
   * election for those that still have none, and resolves with their names. RabbitMQ 3.10 can
   * bring a single-node quorum queue back from a `kill -9` with no leader and never elect one
   * (rabbitmq-server#10070): it then takes no message and answers no consumer, for good.
   */
  async electMissingLeaders(queues: readonly string[], waitMs: number): Promise<string[]> {
    const deadline = Date.now() + waitMs;
    let leaderless = [...queues];
    for (;;) {
      const checks = await this.#haveLeaders(leaderless);
      leaderless = leaderless.filter((_, i) => !checks[i]);
      if (leaderless.length === 0 || Date.now() > deadline) break;
      await sleep(250);
    }
    for (const queue of leaderless) {
      await this.#evalOk(`ra:trigger_election({${raServerName(queue)}, node()}).`);
    }
    for (const queue of leaderless) {
      await waitFor(`a leader for ${queue}`, () => this.#hasLeader(queue), 15_000);
    }
    return leaderless;
  }

  /**
   * Whether each queue has a leader, in one `rabbitmqctl eval`: each call boots an Erlang VM,
   * and a call per queue, side by side, outlived the CLI's timeout on a loaded machine.
   */
  async #haveLeaders(queues: readonly string[]): Promise<boolean[]> {
    if (queues.length === 0) return [];
    const names = queues.map(raServerName).join(', ');
    const answer = await this.ctl(
      'eval',
      `[ra_leaderboard:lookup_leader(Q) =/= undefined || Q <- [${names}]].`,
    );
    const values = answer
      .trim()
      .replace(/^\[|\]$/g, '')
      .split(',')
      .map((v) => v.trim());
    if (values.length !== queues.length || values.some((v) => v !== 'true' && v !== 'false')) {
      throw new Error(`unexpected answer to a leader lookup: ${answer}`);
    }
    return values.map((v) => v === 'true');
  }

  async #hasLeader(queue: string): Promise<boolean> {
    const answer = await this.ctl('eval', `ra_leaderboard:lookup_leader(${raServerName(queue)}).`);
    return answer.trim() !== 'undefined';
  }

  async #evalOk(expression: string): Promise<void> {
    const answer = (await this.ctl('eval', expression)).trim();
    if (answer !== 'ok') throw new Error(`${expression} answered ${answer}`);
  }

  logTail(lines = 40): string {
    try {
      const text = readFileSync(path.join(this.dir, 'log', `${this.nodeName}.log`), 'utf8');
      return text.split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Kills the node and removes its files. */
  async destroy(): Promise<void> {
    await this.kill().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/** The registered name of a quorum queue's Raft server, as an Erlang atom: vhost `/` and `queue`. */
function raServerName(queue: string): string {
  if (!/^[\w.-]+$/.test(queue)) throw new Error(`unexpected queue name ${queue}`);
  return `'%2F_${queue}'`;
}

/** An AMQP handshake: the broker answers the protocol header with connection.start (frame type 1). */
export function amqpAnswers(port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once('connect', () => socket.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    socket.once('data', (chunk: Buffer) => done(chunk[0] === 1));
    socket.once('error', () => done(false));
    socket.once('close', () => done(false));
  });
}

/** Hands the node's directory and the files made for it to the service user. */
function chownRecursive(dir: string, user: string): void {
  const { uid, gid } = userIds(user);
  chownSync(dir, uid, gid);
  for (const sub of ['mnesia', 'log', 'enabled_plugins', 'rabbitmq.conf', 'rabbitmq-env.conf']) {
    chownSync(path.join(dir, sub), uid, gid);
  }
}

/** The uid and gid of a local user, from /etc/passwd. */
export function userIds(user: string): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} on this machine`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
