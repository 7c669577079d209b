#!/usr/bin/env node
/**
 * `sqlgate`, the command line for people: `query`, `import`, `changes`, `serve` and `credential`.
 * The package's `bin` points at the compiled form of this file.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { changesCommand } from "./changes.js";
import type { CliIo, Command } from "./command.js";
import { credentialCommand } from "./credential.js";
import { exitCodeFromError, messageFromError } from "./errors.js";
import { importCommand } from "./import.js";
import { queryCommand } from "./query.js";
import { serveCommand } from "./serve.js";

const commands: readonly Command[] = [
  queryCommand,
  importCommand,
  changesCommand,
  serveCommand,
  credentialCommand,
];

/** Where `query` and `import` go without `--url`: the gateway's default SQLGATE_LISTEN port on this machine. */
const defaultUrl = "http://127.0.0.1:8080";

function overview(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: sqlgate <command> [options]

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

Options:
  -h, --help     this help; sqlgate <command> --help for a command's
  -v, --version  sqlgate's version

Examples:
  sqlgate query "SELECT NOW()"
  sqlgate import events.csv --table events
  sqlgate changes orders
  sqlgate serve
  sqlgate credential create --file credentials.yaml --name app
`;
}

/** The version in sqlgate's package.json, found above this file (compiled or not). */
function version(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === "sqlgate" && pkg.version !== undefined) return pkg.version;
    } catch {
      // No package.json here: look one level up.
    }
    const parent = path.dirname(dir);
    if (parent === dir) return "unknown";
    dir = parent;
  }
}

/** Whether `argv` asks for help, looking only at options (before a `--`). */
function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end === -1 ? argv : argv.slice(0, end)).some((a) => a === "-h" || a === "--help");
}

/** Runs the command line `argv` (without node and the script) and resolves with the exit code. */
async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help") {
    io.stdout.write(overview());
    return name === undefined ? 2 : 0;
  }
  if (name === "-v" || name === "--version") {
    io.stdout.write(`sqlgate ${version()}\n`);
    return 0;
  }
  const helpFor = name === "help" ? rest[0] : undefined;
  const command = commands.find((c) => c.name === (helpFor ?? name));
  if (name === "help" && helpFor === undefined) {
    io.stdout.write(overview());
    return 0;
  }
  if (command === undefined) {
    io.stderr.write(`sqlgate: unknown command ${helpFor ?? name}\n\n${overview()}`);
    return 2;
  }
  if (helpFor !== undefined || wantsHelp(rest)) {
    io.stdout.write(command.help);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (err) {
    const code = exitCodeFromError(err);
    const see = code === 2 ? `\n(see sqlgate ${command.name} --help)` : "";
    io.stderr.write(`sqlgate ${command.name}: ${messageFromError(err)}${see}\n`);
    return code;
  }
}

// `sqlgate query ... | head` closes the pipe early; that is not an error.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});
process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  defaultUrl,
});
