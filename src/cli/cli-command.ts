/** Exit status of a command that did its work. */
export const EXIT_OK = 0;
/** Exit status when the work failed: the database or broker could not be reached, say. */
export const EXIT_FAILURE = 1;
/** Exit status of a wrong command line; nothing was done. */
export const EXIT_USAGE = 2;

/** The environment variables the CLI reads. */
export type CliEnv = Readonly<Record<string, string | undefined>>;

/** One `outboxkit <name>` command. */
export interface CliCommand {
  readonly name: string;
  /** One line for the command list of `outboxkit --help`. */
  readonly summary: string;
  /** The full text of `outboxkit <name> --help`. */
  readonly help: string;
  /**
   * Runs the command with the arguments after its name. Resolves with the exit status; throws a
   * `UsageError` for a wrong command line and anything else for a failure at run time.
   */
  run(argv: readonly string[], env: CliEnv): Promise<number>;
}
