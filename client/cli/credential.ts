/**
 * `sqlgate credential`: creates and lists the gateway's credentials. Hashing
 * belongs to the server, which the client never imports, so this runs the
 * server's credential entry point beside it, as `serve` runs the gateway.
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import type { Command } from "./command.js";
import { serverEntry } from "./serve.js";

const help = `Usage:
  sqlgate credential create --file FILE --name NAME [--database DB] [--role ROLE] [--replace]
  sqlgate credential list --file FILE

create adds a credential to FILE (the gateway's SQLGATE_CREDENTIALS_FILE,
created if missing) with a generated password, which it prints once: the
file keeps only its scrypt hash. --replace gives an existing credential a
new password. A running gateway loads the file again on SIGHUP.

Roles:
  read_write   (default) any statement, transactions, ingest
  read_only    statements run read-only; MySQL refuses writes
  ingest_only  IngestService only

Without --database the credential works on the MySQL URL's database.

Example:
  sqlgate credential create --file /etc/sqlgate/credentials.yaml --name shop --database shop
`;

export const credentialCommand: Command = {
  name: "credential",
  summary: "create or list the gateway's credentials (SQLGATE_CREDENTIALS_FILE)",
  help,
  async run(argv, io) {
    const entry = serverEntry("credential-cli");
    if (!existsSync(entry)) {
      io.stderr.write(`sqlgate credential: ${entry} is missing; run npm run build\n`);
      return 1;
    }
    const child = spawn(process.execPath, [...process.execArgv, entry, ...argv], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.pipe(io.stdout, { end: false });
    child.stderr.pipe(io.stderr, { end: false });
    return new Promise<number>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => resolve(code ?? 1));
    });
  },
};
