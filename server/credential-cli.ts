/**
 * The credential commands' entry, run by `sqlgate credential ...`:
 *
 *   create --file F --name N [--database D] [--role R] [--replace]
 *       adds a credential with a generated password to F (created if
 *       missing) and prints the password, once
 *   list --file F
 *       names, roles and databases; never a hash
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { createCredential } from "./auth/credential-tool.js";
import { parseCredentials } from "./auth/credentials.js";
import { type Role, roles } from "./principal.js";

const usage = `Usage:
  sqlgate credential create --file FILE --name NAME [--database DB] [--role ROLE] [--replace]
  sqlgate credential list --file FILE

Roles: ${roles.join(", ")} (default read_write). Without --database the
credential works on the MySQL URL's database.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      file: { type: "string" },
      name: { type: "string" },
      database: { type: "string" },
      role: { type: "string", default: "read_write" },
      replace: { type: "boolean", default: false },
    },
  });
  if (values.file === undefined || (command !== "create" && command !== "list")) {
    process.stderr.write(`${usage}\n`);
    return 2;
  }
  if (command === "list") {
    const list = existsSync(values.file) ? parseCredentials(readFileSync(values.file, "utf8")) : [];
    for (const c of list) {
      process.stdout.write(`${c.name}\t${c.role}\t${c.database ?? "(the MySQL URL's database)"}\n`);
    }
    return 0;
  }
  if (values.name === undefined) {
    process.stderr.write(`--name is required\n${usage}\n`);
    return 2;
  }
  const password = await createCredential(values.file, {
    name: values.name,
    database: values.database,
    role: values.role as Role,
    replace: values.replace,
  });
  process.stdout.write(`Credential ${values.name} (${values.role}) is in ${values.file}.
Its password, shown only this once (only its hash is stored):

  ${password}

Use it as
  HTTP Basic:            ${values.name}:${password}
  Bearer token:          ${values.name}.${password}
  @planetscale/database: url: "https://${values.name}:${password}@<gateway host>"

A running gateway loads it on SIGHUP (kill -HUP <pid>).
`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: Error) => {
    process.stderr.write(`sqlgate credential: ${err.message}\n`);
    process.exit(1);
  },
);
