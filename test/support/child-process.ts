import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The compiled CLI, as `npx outboxkit` runs it: dist/test/ sits beside dist/src/. */
export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface ChildOutcome {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * A Node script in a child process of its own, so that an unhandled 'error' really ends it: the
 * test sees the exit status instead of a listener of the test runner catching the throw.
 */
export class NodeChild {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  /** Set once the process has exited. */
  outcome: ChildOutcome | undefined;
  readonly #closed: Promise<ChildOutcome>;

  constructor(script: string, args: readonly string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, ['--enable-source-maps', script, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close' rather than 'exit': it comes after the pipes are drained, so the output is complete.
    this.#closed = once(this.child, 'close').then(([code, signal]) => {
      this.outcome = { code, signal } as ChildOutcome;
      return this.outcome;
    });
  }

  get running(): boolean {
    return this.outcome === undefined;
  }

  /** Resolves with the exit status; rejects when it is still running after `timeoutMs`. */
  async exited(timeoutMs = 30_000): Promise<ChildOutcome> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`child still running after ${timeoutMs} ms:\n${this.stderr}`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.#closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGTERM, then the exit status; SIGKILL after `timeoutMs` so no test leaves it behind. */
  async stop(timeoutMs = 20_000): Promise<ChildOutcome> {
    if (this.outcome) return this.outcome;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.#closed;
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}
