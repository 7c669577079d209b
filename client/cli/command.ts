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

/**
 * Client options for a `--url`: credentials in its user info
 * (`http://name:password@host`, percent-encoded) become Basic credentials,
 * and SQLGATE_TOKEN, if set, a Bearer token; the URL is passed on without them.
 */
export function clientOptionsFor(url: string, env: NodeJS.ProcessEnv = process.env) {
  const parsed = new URL(url);
  const username = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  parsed.username = "";
  parsed.password = "";
  const plain = parsed.toString().replace(/\/$/, "");
  if (username !== "") return { url: plain, username, password };
  if (env.SQLGATE_TOKEN) return { url: plain, token: env.SQLGATE_TOKEN };
  return { url: plain };
}
