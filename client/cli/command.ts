/**
 * What every `sqlgate` subcommand is: a name, its help, and a `run` that
 * returns the process's exit code.
 */

/** Where a command writes, and the defaults the entry point settled on. */
export interface CliIo {
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /** The gateway URL used when `--url` is not given. */
  readonly defaultUrl: string;
}

export interface Command {
  readonly name: string;
  /** One line for `sqlgate --help`. */
  readonly summary: string;
  /** The text of `sqlgate <name> --help`. */
  readonly help: string;
  /**
   * Runs the command with its arguments (after the command's name). Throws
   * `UsageError` (or a parseArgs error) for a bad command line; a failure of
   * the work itself is reported by the command and returned as exit code 1.
   */
  run(argv: string[], io: CliIo): Promise<number>;
}
