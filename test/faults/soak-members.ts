import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { type ConsumerStats, emptyConsumerStats } from '../../src/consumer/consumer-stats.js';
import { within } from '../support/wait-for.js';
import { faultRunDir, registerProcess, unregisterProcess } from './fault-processes.js';
import { emptyRelayCounts, type RelayCounts, type RelayProcess } from './relay-handles.js';

const CONSUMER_SCRIPT = fileURLToPath(new URL('./soak-consumer.js', import.meta.url));
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** A consumer of the soak's ledger in a child process (`soak-consumer.ts`). */
export class ConsumerProcess {
  readonly child: ChildProcess;
  /** Its last counts, as it printed them. */
  stats: ConsumerStats = emptyConsumerStats();
  amqpConnects = 0;
  readonly #lines: string[] = [];
  readonly #exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  #started = false;

  private constructor(child: ChildProcess) {
    this.child = child;
    this.#exited = once(child, 'exit').then(([code, signal]) => {
      this.#exit = { code, signal } as { code: number | null; signal: NodeJS.Signals | null };
      unregisterProcess(child.pid!);
      return this.#exit;
    });
    let partial = '';
    child.stdout!.setEncoding('utf8').on('data', (text: string) => {
      const parts = (partial + text).split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.#onLine(line);
    });
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      for (const line of text.split('\n')) if (line) this.#keep(line);
    });
  }

  static async spawn(env: Record<string, string>): Promise<ConsumerProcess> {
    const runDir = faultRunDir();
    const child = spawn(process.execPath, ['--enable-source-maps', CONSUMER_SCRIPT], {
      // The marker the reaper looks for before it kills a leftover of an aborted run.
      env: { ...process.env, ...env, OUTBOXKIT_FAULTS_RUN: runDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) throw new Error('could not start a consumer process');
    registerProcess(child.pid, runDir, 'SIGKILL');
    const consumer = new ConsumerProcess(child);
    const started = new Promise<void>((resolve, reject) => {
      consumer.#onStarted = resolve;
      void consumer.#exited.then((exit) =>
        reject(
          new Error(
            `consumer exited at start (${JSON.stringify(exit)}):\n${consumer.recentLog().join('\n')}`,
          ),
        ),
      );
    });
    try {
      await within(`consumer ${child.pid} start`, started, START_TIMEOUT_MS);
    } catch (error) {
      child.kill('SIGKILL');
      throw error;
    }
    return consumer;
  }

  #onStarted: () => void = () => {};

  #onLine(line: string): void {
    if (line === 'started') {
      this.#started = true;
      this.#onStarted();
      return;
    }
    try {
      const entry = JSON.parse(line) as { stats: ConsumerStats; amqpConnects: number };
      this.stats = entry.stats;
      this.amqpConnects = entry.amqpConnects;
    } catch {
      this.#keep(line);
    }
  }

  #keep(line: string): void {
    this.#lines.push(line);
    if (this.#lines.length > 100) this.#lines.shift();
  }

  get pid(): number {
    return this.child.pid!;
  }

  get started(): boolean {
    return this.#started;
  }

  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.#exit;
  }

  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.#exited;
  }

  async kill(): Promise<void> {
    if (this.#exit) return;
    this.child.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGTERM; throws unless it exits with status 0 within the bound. */
  async stop(): Promise<void> {
    if (!this.#exit) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    const { code, signal } = await this.#exited;
    clearTimeout(timer);
    if (code !== 0) {
      throw new Error(
        `consumer ${this.pid} exited with ${code ?? signal} on SIGTERM:\n${this.recentLog().slice(-20).join('\n')}`,
      );
    }
  }

  recentLog(): string[] {
    return [...this.#lines];
  }
}

/** One process the soak runs, in one of its generations. */
export interface Generation {
  /** `relay0`, `relay1`, `ordered`, `plain`. */
  readonly slot: string;
  /** 1 for the first process of the slot, counting up with each respawn. */
  readonly gen: number;
  /** `slot#gen`, as samples and reports name it. */
  readonly label: string;
  readonly pid: number;
  /** Its Postgres sessions' application name. */
  readonly applicationName: string;
  readonly startedAt: number;
  endedAt?: number;
  /** How it ended: `SIGKILL by the soak`, `exit 0 on SIGTERM`, or what it did on its own. */
  end?: string;
}

/** What a slot runs: a relay through the CLI or a consumer child. */
export type Member =
  | { readonly kind: 'relay'; readonly process: RelayProcess; readonly generation: Generation }
  | {
      readonly kind: 'consumer';
      readonly process: ConsumerProcess;
      readonly generation: Generation;
    };

export type Spawner = (slot: string, gen: number) => Promise<Member>;

/**
 * The soak's processes, one per slot, each respawned after the soak kills it or it dies on its
 * own. Operations on one slot run one after another; a death the soak did not cause is
 * reported through `onUnexpectedExit` (a finding) and the slot is respawned.
 */
export class Members {
  readonly #spawn: Spawner;
  readonly #current = new Map<string, Member>();
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly generations: Generation[] = [];
  /** Counts of the relays and consumers that are gone, so totals survive their deaths. */
  readonly #relaysGone: RelayCounts[] = [];
  readonly #consumersGone = new Map<string, ConsumerStats[]>();
  readonly #expected = new Set<number>();
  readonly #onUnexpectedExit: (generation: Generation, how: string) => void;
  #closing = false;

  constructor(spawner: Spawner, onUnexpectedExit: (generation: Generation, how: string) => void) {
    this.#spawn = spawner;
    this.#onUnexpectedExit = onUnexpectedExit;
  }

  /** Runs `op` on `slot` after whatever runs on it now. */
  #serial<T>(slot: string, op: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(slot) ?? Promise.resolve();
    const next = previous.then(op, op);
    this.#queues.set(
      slot,
      next.catch(() => {}),
    );
    return next;
  }

  start(slot: string): Promise<Member> {
    return this.#serial(slot, () => this.#startNow(slot));
  }

  async #startNow(slot: string): Promise<Member> {
    const gen = this.generations.filter((g) => g.slot === slot).length + 1;
    const member = await this.#spawn(slot, gen);
    this.generations.push(member.generation);
    this.#current.set(slot, member);
    const child = member.process.child;
    child.once('exit', (code, signal) => {
      const how = signal ? `killed by ${signal}` : `exit ${code}`;
      member.generation.endedAt = Date.now();
      member.generation.end ??= how;
      this.#retire(member);
      if (this.#expected.delete(child.pid!) || this.#closing) return;
      member.generation.end = `${how} on its own`;
      this.#onUnexpectedExit(member.generation, how);
      void this.start(slot).catch((error: unknown) =>
        this.#onUnexpectedExit(member.generation, `respawn failed: ${(error as Error).message}`),
      );
    });
    return member;
  }

  #retire(member: Member): void {
    if (this.#current.get(member.generation.slot) === member) {
      this.#current.delete(member.generation.slot);
    }
    if (member.kind === 'relay') this.#relaysGone.push(member.process.counts());
    else {
      const gone = this.#consumersGone.get(member.generation.slot) ?? [];
      gone.push(member.process.stats);
      this.#consumersGone.set(member.generation.slot, gone);
    }
  }

  /** SIGKILL of the slot's process, then a new one. */
  kill(slot: string): Promise<Generation | undefined> {
    return this.#serial(slot, async () => {
      const member = this.#current.get(slot);
      if (member) {
        this.#expected.add(member.generation.pid);
        member.generation.end = 'SIGKILL by the soak';
        await member.process.kill();
      }
      await this.#startNow(slot);
      return member?.generation;
    });
  }

  /** SIGTERM of the slot's process (which must exit 0), then a new one. */
  terminate(slot: string): Promise<Generation | undefined> {
    return this.#serial(slot, async () => {
      const member = this.#current.get(slot);
      let failure: unknown;
      if (member) {
        this.#expected.add(member.generation.pid);
        member.generation.end = 'exit 0 on SIGTERM';
        try {
          await member.process.stop();
        } catch (error) {
          member.generation.end = `SIGTERM: ${(error as Error).message.split('\n')[0]}`;
          failure = error;
        }
      }
      await this.#startNow(slot);
      if (failure) throw failure;
      return member?.generation;
    });
  }

  /** Every slot's process, in slot order. */
  current(): Member[] {
    return [...this.#current.values()].sort((a, b) =>
      a.generation.slot.localeCompare(b.generation.slot),
    );
  }

  /** Stops every process with SIGTERM, once whatever runs on its slot is done; returns what failed. */
  async stopAll(): Promise<string[]> {
    await Promise.all([...this.#queues.values()]);
    this.#closing = true;
    const errors: string[] = [];
    await Promise.all(
      this.current().map(async (member) => {
        this.#expected.add(member.generation.pid);
        member.generation.end = 'exit 0 on SIGTERM (end of run)';
        try {
          await member.process.stop();
        } catch (error) {
          member.generation.end = 'did not stop cleanly at the end';
          errors.push(`${member.generation.label}: ${(error as Error).message.split('\n')[0]}`);
        }
      }),
    );
    return errors;
  }

  /** Kills whatever still runs (after a failure); idempotent. */
  async killAll(): Promise<void> {
    this.#closing = true;
    await Promise.all(this.current().map((m) => m.process.kill().catch(() => {})));
  }

  /** Relay counts summed over every generation, the living ones included. */
  relayTotals(): RelayCounts {
    const all = [
      ...this.#relaysGone,
      ...this.current().flatMap((m) => (m.kind === 'relay' ? [m.process.counts()] : [])),
    ];
    const total = emptyRelayCounts();
    for (const c of all) {
      for (const k of Object.keys(total) as Array<keyof RelayCounts>) total[k] += c[k];
    }
    return total;
  }

  /** A consumer slot's counts summed over its generations (a SIGKILL loses the last second's). */
  consumerTotals(slot: string): ConsumerStats {
    const member = this.#current.get(slot);
    const all = [
      ...(this.#consumersGone.get(slot) ?? []),
      ...(member?.kind === 'consumer' ? [member.process.stats] : []),
    ];
    const total = emptyConsumerStats();
    for (const s of all) {
      for (const k of Object.keys(total) as Array<keyof ConsumerStats>) total[k] += s[k];
    }
    return total;
  }

  recentLog(slot: string): string[] {
    return this.#current.get(slot)?.process.recentLog() ?? [];
  }
}
