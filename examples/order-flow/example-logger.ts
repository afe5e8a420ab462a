import type { LoggerService } from '@nestjs/common';

/**
 * Keeps log lines instead of printing them, so they do not tear through the progress display;
 * the runner prints the warnings after it.
 */
export class ExampleLogger implements LoggerService {
  readonly warnings: string[] = [];
  readonly errors: string[] = [];

  log(): void {}
  debug(): void {}
  verbose(): void {}

  warn(message: unknown): void {
    this.warnings.push(String(message));
  }

  error(message: unknown, ...rest: unknown[]): void {
    this.errors.push([message, ...rest].map(String).join(' '));
  }
}
