/**
 * `sqlgate serve`: starts the gateway. The CLI is part of the client, which
 * never imports the server (STYLE.md), so the gateway runs as a child
 * process: the entry point that was built or checked out beside this file.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Command } from "./command.js";
import { UsageError } from "./errors.js";

const help = `Usage: sqlgate serve

Starts the gateway (node dist/server/main.js) in the foreground, with this
process's environment and terminal. It is configured by SQLGATE_*
environment variables (SQLGATE_LISTEN, SQLGATE_MYSQL_URL, ...; the README's
configuration table lists them all); without SQLGATE_MYSQL_URL it starts a
private MariaDB/MySQL under SQLGATE_DATA_DIR.

SIGTERM and SIGINT are passed to the gateway, which drains its calls and
stops; sqlgate exits with the gateway's exit code.

Options:
  -h, --help   this help

Example:
  SQLGATE_LISTEN=127.0.0.1:8080 SQLGATE_MYSQL_URL=mysql://app:secret@db/app sqlgate serve
`;

export const serveCommand: Command = {
  name: "serve",
  summary: "start the gateway (configured by SQLGATE_* environment variables)",
  help,
  async run(argv, io) {
    const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
    if (positionals.length > 0) {
      throw new UsageError(
        `serve: unexpected arguments: ${positionals.join(" ")} (the gateway is configured by SQLGATE_* environment variables)`,
      );
    }
    const entry = serverEntry("main");
    if (!existsSync(entry)) {
      io.stderr.write(
        `sqlgate serve: the gateway's entry point ${entry} is missing; run npm run build\n`,
      );
      return 1;
    }
    // The node options this process runs with (a TypeScript loader when run
    // from source, --max-old-space-size, ...) apply to the gateway too.
    const child = spawn(process.execPath, [...process.execArgv, entry], {
      stdio: "inherit",
      env: process.env,
    });
    const forward = (signal: NodeJS.Signals) => () => {
      child.kill(signal);
    };
    const onTerm = forward("SIGTERM");
    const onInt = forward("SIGINT");
    process.on("SIGTERM", onTerm);
    process.on("SIGINT", onInt);
    try {
      return await new Promise<number>((resolve, reject) => {
        child.once("error", reject);
        child.once("exit", (code, signal) =>
          // A child killed by a signal exits as shells report it: 128 + the signal's number.
          resolve(code ?? 128 + (signal !== null ? (os.constants.signals[signal] ?? 0) : 0)),
        );
      });
    } finally {
      process.off("SIGTERM", onTerm);
      process.off("SIGINT", onInt);
    }
  },
};

/**
 * A server entry point beside this file: compiled, this is
 * dist/client/cli/serve.js and the gateway dist/server/main.js; run from
 * source (through tsx), client/cli/serve.ts and server/main.ts.
 */
export function serverEntry(name: "main" | "credential-cli"): string {
  const extension = import.meta.url.endsWith(".ts") ? "ts" : "js";
  return fileURLToPath(new URL(`../../server/${name}.${extension}`, import.meta.url));
}
