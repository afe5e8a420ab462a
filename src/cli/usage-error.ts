/**
 * The command line was wrong: an unknown flag, a bad value, a missing URL. The CLI prints the
 * message with a pointer to `--help` and exits with status 2, apart from runtime failures (1).
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
