import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { OutboxRelay } from '../../src/relay/outbox-relay.js';
import type { RelayOptions } from '../../src/relay/relay-options.js';
import type { OutboxLogger } from '../../src/util/logger.js';
import { waitForExit } from './exec.js';
import { faultRunDir, registerProcess, unregisterProcess } from './fault-processes.js';

/** What a relay did, in the same terms for a relay in this process and one in a child. */
export interface RelayCounts {
  published: number;
  retried: number;
  /** Rows given back untouched: at a stop, or in flight when the broker connection went down. */
  released: number;
  parked: number;
  errors: number;
  amqpConnects: number;
  listenConnects: number;
  /** Times the broker blocked publishing (memory or disk alarm). */
  blocked: number;
}

/** Counts of nothing, to sum others into. */
export function emptyRelayCounts(): RelayCounts {
  return {
    published: 0,
    retried: 0,
    released: 0,
    parked: 0,
    errors: 0,
    amqpConnects: 0,
    listenConnects: 0,
    blocked: 0,
  };
}

export interface RelayHandle {
  readonly name: string;
  /** Its Postgres sessions' application name. */
  readonly applicationName: string;
  counts(): RelayCounts;
  /** Graceful stop; for a child, SIGTERM and its exit status. */
  stop(): Promise<void>;
  /** Log lines kept for a failure report. */
  recentLog(): string[];
}

/** A logger that counts messages and keeps the last lines, for evidence and failure reports. */
export class CountingLogger implements OutboxLogger {
  readonly counts = new Map<string, number>();
  readonly #lines: string[] = [];
  readonly #echo = Boolean(process.env.OUTBOXKIT_TEST_LOG);
  readonly #prefix: string;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  #log(level: string, message: string, context?: Record<string, unknown>): void {
    this.counts.set(message, (this.counts.get(message) ?? 0) + 1);
    const line = `${new Date().toISOString()} ${this.#prefix} ${level} ${message} ${context ? JSON.stringify(context) : ''}`;
    this.#lines.push(line);
    if (this.#lines.length > 200) this.#lines.shift();
    if (this.#echo) console.error(line);
  }

  count(message: string): number {
    return this.counts.get(message) ?? 0;
  }

  lines(): string[] {
    return [...this.#lines];
  }

  debug = (message: string, context?: Record<string, unknown>) =>
    this.#log('debug', message, context);
  info = (message: string, context?: Record<string, unknown>) =>
    this.#log('info', message, context);
  warn = (message: string, context?: Record<string, unknown>) =>
    this.#log('warn', message, context);
  error = (message: string, context?: Record<string, unknown>) =>
    this.#log('error', message, context);
}

/** A relay in the test process: exact counts, for faults that do not need the relay to die. */
export class InProcessRelay implements RelayHandle {
  readonly name: string;
  readonly applicationName: string;
  readonly relay: OutboxRelay;
  readonly logger: CountingLogger;

  private constructor(
    name: string,
    applicationName: string,
    relay: OutboxRelay,
    logger: CountingLogger,
  ) {
    this.name = name;
    this.applicationName = applicationName;
    this.relay = relay;
    this.logger = logger;
  }

  static async start(
    name: string,
    applicationName: string,
    options: RelayOptions,
  ): Promise<InProcessRelay> {
    const logger = new CountingLogger(name);
    const relay = new OutboxRelay({ ...options, logger });
    await relay.start();
    return new InProcessRelay(name, applicationName, relay, logger);
  }

  counts(): RelayCounts {
    const s = this.relay.stats();
    return {
      published: s.published,
      retried: s.retried,
      released: s.released,
      parked: s.parked,
      errors: s.errors,
      amqpConnects: this.relay.amqpConnects,
      listenConnects: this.relay.listenConnects,
      blocked: this.logger.count('RabbitMQ blocked publishing'),
    };
  }

  stop(): Promise<void> {
    return this.relay.stop();
  }

  recentLog(): string[] {
    return this.logger.lines();
  }
}

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface RelayProcessOptions {
  readonly applicationName: string;
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  readonly schema: string;
  /** Extra flags of `outboxkit relay`. */
  readonly args?: readonly string[];
}

/**
 * `outboxkit relay` as a child process, for faults where the relay must die (SIGKILL). Its
 * counts come from its JSON log lines: the periodic stats, and the connect and retry messages.
 */
export class RelayProcess implements RelayHandle {
  readonly name: string;
  readonly applicationName: string;
  readonly child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #stats = { published: 0, retried: 0, released: 0, parked: 0, errors: 0 };
  #retriedLogged = 0;
  #releasedLogged = 0;
  #amqpConnects = 0;
  #listenLost = 0;
  #blocked = 0;
  #started = false;
  #killed = false;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private constructor(name: string, applicationName: string, child: ChildProcess) {
    this.name = name;
    this.applicationName = applicationName;
    this.child = child;
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        if (child.pid !== undefined) unregisterProcess(child.pid);
        resolve({ code, signal });
      });
    });
    let partial = '';
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.#onLine(line);
    });
    child.stdout?.resume();
  }

  static async spawn(name: string, options: RelayProcessOptions): Promise<RelayProcess> {
    const runDir = faultRunDir();
    const child = spawn(
      process.execPath,
      [
        '--enable-source-maps',
        CLI,
        'relay',
        '--schema',
        options.schema,
        '--heartbeat',
        '1',
        '--publish-timeout',
        '2s',
        '--poll-interval',
        '200ms',
        '--stop-timeout',
        '3s',
        '--stats-interval',
        '100ms',
        '--log-level',
        'info',
        ...(options.args ?? []),
      ],
      {
        env: {
          ...process.env,
          DATABASE_URL: options.databaseUrl,
          AMQP_URL: options.amqpUrl,
          // The marker the reaper looks for before it kills a leftover of an aborted run.
          OUTBOXKIT_FAULTS_RUN: runDir,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    if (child.pid === undefined) throw new Error('could not start the relay process');
    registerProcess(child.pid, runDir, 'SIGKILL');
    const relay = new RelayProcess(name, options.applicationName, child);
    const deadline = Date.now() + 20_000;
    while (!relay.#started) {
      if (relay.#exit) {
        throw new Error(`relay ${name} exited at start:\n${relay.recentLog().join('\n')}`);
      }
      if (Date.now() > deadline) throw new Error(`relay ${name} did not start`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return relay;
  }

  #onLine(line: string): void {
    this.#lines.push(`${this.name} ${line}`);
    if (this.#lines.length > 300) this.#lines.shift();
    if (process.env.OUTBOXKIT_TEST_LOG) console.error(`${this.name} ${line}`);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    switch (entry.message) {
      case 'relay started':
        this.#started = true;
        break;
      case 'relay stats':
      case 'relay stopped':
        this.#stats = {
          published: Number(entry.published ?? 0),
          retried: Number(entry.retried ?? 0),
          released: Number(entry.released ?? 0),
          parked: Number(entry.parked ?? 0),
          errors: Number(entry.errors ?? 0),
        };
        break;
      case 'outbox rows will be retried':
        this.#retriedLogged += Number(entry.count ?? 0);
        break;
      case 'broker connection lost; unconfirmed rows go back untouched':
        this.#releasedLogged += Number(entry.count ?? 0);
        break;
      case 'RabbitMQ connected':
        this.#amqpConnects += 1;
        break;
      case 'LISTEN connection lost; reconnecting':
        this.#listenLost += 1;
        break;
      case 'RabbitMQ blocked publishing':
        this.#blocked += 1;
        break;
    }
  }

  counts(): RelayCounts {
    return {
      ...this.#stats,
      // The retry log lines' counts add up to every retry committed, but for the last interval's
      // before a SIGKILL; the stats lines (every 100 ms) cover that.
      retried: Math.max(this.#stats.retried, this.#retriedLogged),
      released: Math.max(this.#stats.released, this.#releasedLogged),
      amqpConnects: this.#amqpConnects,
      listenConnects: this.#listenLost + (this.#started ? 1 : 0),
      blocked: this.#blocked,
    };
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Whether the process exited on its own (a crash), not by our signal. */
  get crashed(): boolean {
    return this.#exit !== undefined && !this.#killed && this.#exit.code !== 0;
  }

  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.#exit;
  }

  /** SIGKILL: no stop, no rollback by the relay, no goodbye to the broker. */
  async kill(): Promise<void> {
    if (this.#exit) return;
    this.#killed = true;
    this.child.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGTERM; the CLI promises to finish what is in flight and exit with status 0. */
  async stop(): Promise<void> {
    if (this.#exit) {
      if (this.crashed) throw new Error(`relay ${this.name} died: ${JSON.stringify(this.#exit)}`);
      return;
    }
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    const { code, signal } = await this.#exited;
    clearTimeout(timer);
    await waitForExit(this.pid, 1000);
    if (code !== 0) {
      throw new Error(
        `relay ${this.name} exited with ${code ?? signal} on SIGTERM:\n${this.recentLog().slice(-20).join('\n')}`,
      );
    }
  }

  recentLog(): string[] {
    return [...this.#lines];
  }
}
