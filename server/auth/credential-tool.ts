/**
 * Changes to a credentials file (see credentials.ts): a credential with a
 * generated password, of which only the hash is written. The file is
 * rewritten atomically (a temporary file renamed over it), with its comments
 * kept and mode 0600.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { isMap, isSeq, parseDocument } from "yaml";
import { type Role, roles } from "../principal.js";
import { credentialNamePattern, parseCredentials } from "./credentials.js";
import { hashPassword } from "./password-hash.js";

export interface NewCredential {
  readonly name: string;
  readonly database: string | undefined;
  readonly role: Role;
  /** Replace a credential of the same name (a new password) rather than refuse. */
  readonly replace: boolean;
}

/** Adds `credential` to the file at `path` with a new password; resolves with the password. */
export async function createCredential(path: string, credential: NewCredential): Promise<string> {
  if (!credentialNamePattern.test(credential.name)) {
    throw new Error("--name: expected 1 to 64 letters, digits, _ or -");
  }
  if (!roles.includes(credential.role))
    throw new Error(`--role: expected one of ${roles.join(", ")}`);
  const text = existsSync(path) ? readFileSync(path, "utf8") : "credentials: []\n";
  parseCredentials(text); // the file must be valid before it is changed
  const document = parseDocument(text);
  const list = document.get("credentials");
  if (!isSeq(list)) throw new Error(`${path}: expected a \`credentials:\` list`);
  // One entry per block, however the list was written (a new file's is `[]`).
  list.flow = false;
  const at = list.items.findIndex((item) => isMap(item) && item.get("name") === credential.name);
  if (at !== -1 && !credential.replace) {
    throw new Error(
      `credential ${credential.name} exists already (--replace gives it a new password)`,
    );
  }
  const password = randomBytes(24).toString("base64url");
  const entry = document.createNode({
    name: credential.name,
    password_hash: await hashPassword(password),
    ...(credential.database === undefined ? {} : { database: credential.database }),
    role: credential.role,
  });
  if (at === -1) list.items.push(entry);
  else list.items[at] = entry;
  const out = document.toString();
  parseCredentials(out);
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, out, { mode: 0o600 });
  chmodSync(temporary, 0o600);
  renameSync(temporary, path);
  return password;
}
