/** A snapshot of the run, for the progress line. */
export interface ProgressState {
  readonly placed: number;
  readonly total: number;
  readonly relayed: number;
  readonly handled: number;
  readonly retries: number;
  readonly deadLetters: number;
}

/**
 * Shows how far the run is: one line rewritten in place on a terminal, or a line at each
 * quarter of the orders when the output is a file or a pipe.
 */
export class ProgressDisplay {
  readonly #out: NodeJS.WriteStream;
  readonly #tty: boolean;
  #lastQuarter = -1;

  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
    this.#tty = out.isTTY === true;
  }

  update(state: ProgressState, phase: string): void {
    const line = this.#line(state, phase);
    if (this.#tty) {
      this.#out.write(`\r${line}\x1b[K`);
      return;
    }
    const quarter = Math.floor((4 * state.placed) / Math.max(1, state.total));
    if (quarter > this.#lastQuarter) {
      this.#lastQuarter = quarter;
      this.#out.write(`${line}\n`);
    }
  }

  /** Ends the display with the final state on a line of its own. */
  finish(state: ProgressState, phase: string): void {
    this.#out.write(
      `${this.#tty ? '\r' : ''}${this.#line(state, phase)}${this.#tty ? '\x1b[K' : ''}\n`,
    );
  }

  #line(s: ProgressState, phase: string): string {
    const width = 24;
    const filled = Math.round((width * s.placed) / Math.max(1, s.total));
    const bar = `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
    return (
      `[${bar}] ${String(s.placed).padStart(String(s.total).length)}/${s.total} orders · ` +
      `${s.relayed} relayed · ${s.handled} handled · ${s.retries} retries · ` +
      `${s.deadLetters} dead letters · ${phase}`
    );
  }
}
