import type { ChildProcess } from 'node:child_process';
import { fork } from 'node:child_process';

/**
 * The messages benchmark 8's parent and its three child processes (producer, relay, consumer)
 * exchange over the IPC channel. Each stage runs in a process of its own so that its CPU time
 * can be read from /proc/PID/stat apart from the others'.
 */
export type StageMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'done' }
  | { readonly type: 'times'; readonly startedAt: number; readonly times: readonly number[] }
  | { readonly type: 'failed'; readonly message: string };

export type ParentMessage =
  | { readonly type: 'go' }
  | { readonly type: 'expect'; readonly base: number; readonly count: number }
  | { readonly type: 'send-times' }
  | { readonly type: 'stop' };

/**
 * The stages' connections carry this application_name, followed by `-` and the stage's name, so the parent can tell their Postgres
 * backends from those of whatever else shares the server.
 */
export const E2E_APPLICATION_NAME = 'outboxkit-bench-e2e';

/** What every stage needs to find the bench's schema and exchange. */
export interface StageSettings {
  readonly schema: string;
  readonly exchange: string;
  readonly count: number;
  readonly producers: number;
  readonly base: number;
  /** The producers' writer sends its INSERT as a prepared statement (`--prepared-statements`). */
  readonly preparedStatements: boolean;
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable between processes on one
 * machine: a commit time taken in the producer and a handle time taken in the consumer.
 */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The settings a stage was started with (its first argument, JSON). */
export function stageSettings(): StageSettings {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error('a bench stage needs its settings as first argument');
  return JSON.parse(raw) as StageSettings;
}

export function sendToParent(message: StageMessage): void {
  process.send?.(message);
}

/** Reports a stage's failure to the parent and ends the process. */
export function failStage(error: unknown): never {
  sendToParent({
    type: 'failed',
    message: error instanceof Error ? (error.stack ?? error.message) : String(error),
  });
  process.exit(1);
}

/** A started stage: its process, and the messages it sent that nobody has taken yet. */
export class Stage {
  readonly #child: ChildProcess;
  readonly #pending: StageMessage[] = [];
  readonly #waiters: ((m: StageMessage) => void)[] = [];
  #exited: Error | undefined;

  private constructor(
    child: ChildProcess,
    readonly name: string,
  ) {
    this.#child = child;
    child.on('message', (m: StageMessage) => {
      const waiter = this.#waiters.shift();
      if (waiter) waiter(m);
      else this.#pending.push(m);
    });
    child.on('exit', (code, signal) => {
      this.#exited = new Error(`${name} exited (${code ?? signal})`);
      for (const waiter of this.#waiters.splice(0))
        waiter({ type: 'failed', message: this.#exited.message });
    });
  }

  /** Starts the compiled stage script next to this module, e.g. `e2e-producer.js`. */
  static start(name: string, script: string, settings: StageSettings): Stage {
    const child = fork(new URL(script, import.meta.url), [JSON.stringify(settings)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    return new Stage(child, name);
  }

  get pid(): number {
    return this.#child.pid!;
  }

  send(message: ParentMessage): void {
    this.#child.send(message);
  }

  /** The next message the stage sends; throws if it reports a failure or exits. */
  async next<T extends StageMessage['type']>(type: T): Promise<Extract<StageMessage, { type: T }>> {
    const m =
      this.#pending.shift() ??
      (this.#exited
        ? ({ type: 'failed', message: this.#exited.message } as const)
        : await new Promise<StageMessage>((resolve) => this.#waiters.push(resolve)));
    if (m.type === 'failed') throw new Error(`${this.name}: ${m.message}`);
    if (m.type !== type) throw new Error(`${this.name} sent ${m.type}, expected ${type}`);
    return m as Extract<StageMessage, { type: T }>;
  }

  /** Asks the stage to stop and waits for its process to end. */
  async stop(): Promise<void> {
    if (this.#exited || this.#child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.send({ type: 'stop' } satisfies ParentMessage);
    await exited;
  }

  kill(): void {
    if (this.#child.exitCode === null) this.#child.kill('SIGKILL');
  }
}
