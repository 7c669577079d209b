/**
 * Named credentials, from the file SQLGATE_CREDENTIALS_FILE (YAML, or JSON,
 * which YAML reads too):
 *
 *   credentials:
 *     - name: app                  # letters, digits, _ and -
 *       password_hash: $scrypt$... # from `sqlgate credential create`
 *       database: shop             # optional: the MySQL URL's database
 *       role: read_write           # read_write | read_only | ingest_only
 *       mysql_user: shop_ro        # optional: run as this MySQL account (its own pools),
 *       mysql_password_env: SHOP_RO_PASSWORD   # its password from this variable
 *                                  #   (or mysql_password: ..., in the file itself)
 *       max_calls: 100             # optional limits, else the SQLGATE_CREDENTIAL_* defaults
 *       max_transactions: 10
 *       calls_per_second: 500
 *
 * The store verifies a password once with scrypt (tens of milliseconds) and
 * then remembers an HMAC of it under a per-process key, so later calls with
 * the right password cost microseconds, while a wrong one always pays the
 * full scrypt cost; replacing the credentials (a reload) forgets what changed.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { parse } from "yaml";
import { type PrincipalLimits, type Role, roles } from "../principal.js";
import { isPasswordHash, verifyPassword } from "./password-hash.js";

export interface Credential {
  readonly name: string;
  readonly passwordHash: string;
  /** The database its statements run on; undefined: the MySQL URL's. */
  readonly database: string | undefined;
  readonly role: Role;
  /** Its own limits; undefined fields take the gateway's defaults. */
  readonly limits: Partial<PrincipalLimits>;
  /** The MySQL account it runs as; undefined: the MySQL URL's. */
  readonly account: { readonly user: string; readonly password: string } | undefined;
}

export const credentialNamePattern = /^[A-Za-z0-9_-]{1,64}$/;
const databasePattern = /^[A-Za-z0-9_$]{1,64}$/;

export class CredentialsFileError extends Error {
  constructor(problems: readonly string[]) {
    super(`invalid credentials file:\n  ${problems.join("\n  ")}`);
    this.name = "CredentialsFileError";
  }
}

/**
 * Reads a credentials file's text; throws CredentialsFileError listing every
 * problem. `env` supplies `mysql_password_env` variables.
 */
export function parseCredentials(
  text: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Credential[] {
  let document: unknown;
  try {
    document = parse(text);
  } catch (err) {
    throw new CredentialsFileError([`not YAML or JSON: ${(err as Error).message}`]);
  }
  const list = (document as { credentials?: unknown } | null)?.credentials;
  if (!Array.isArray(list)) throw new CredentialsFileError(["expected a `credentials:` list"]);
  const problems: string[] = [];
  const seen = new Set<string>();
  const credentials = list.flatMap((entry: unknown, index): Credential[] => {
    const e = (entry ?? {}) as Record<string, unknown>;
    const where = `credentials[${index}]`;
    const before = problems.length;
    const name = String(e.name ?? "");
    if (!credentialNamePattern.test(name)) {
      problems.push(`${where}.name: expected 1 to 64 letters, digits, _ or -`);
    } else if (seen.has(name)) {
      problems.push(`${where}.name: ${name} appears twice`);
    }
    seen.add(name);
    const passwordHash = String(e.password_hash ?? "");
    if (!isPasswordHash(passwordHash)) {
      problems.push(`${where}.password_hash: expected a hash from \`sqlgate credential create\``);
    }
    const database =
      e.database === undefined || e.database === null ? undefined : String(e.database);
    if (database !== undefined && !databasePattern.test(database)) {
      problems.push(`${where}.database: not a database name`);
    }
    const role = String(e.role ?? "read_write") as Role;
    if (!roles.includes(role)) problems.push(`${where}.role: expected one of ${roles.join(", ")}`);
    const limits: { -readonly [K in keyof PrincipalLimits]?: number } = {};
    for (const [field, key] of [
      ["max_calls", "maxCalls"],
      ["max_transactions", "maxTransactions"],
      ["calls_per_second", "callsPerSecond"],
    ] as const) {
      if (e[field] === undefined) continue;
      const value = Number(e[field]);
      if (!Number.isSafeInteger(value) || value < 0) {
        problems.push(`${where}.${field}: expected a whole number (0: no limit)`);
      } else {
        limits[key] = value;
      }
    }
    let account: Credential["account"];
    if (e.mysql_user !== undefined) {
      const variable =
        e.mysql_password_env === undefined ? undefined : String(e.mysql_password_env);
      const password = variable === undefined ? String(e.mysql_password ?? "") : env[variable];
      if (password === undefined) {
        problems.push(`${where}.mysql_password_env: ${variable} is not set`);
      } else {
        account = { user: String(e.mysql_user), password };
      }
    }
    return problems.length === before
      ? [{ name, passwordHash, database, role, limits, account }]
      : [];
  });
  if (problems.length > 0) throw new CredentialsFileError(problems);
  return credentials;
}

/** Reads and checks the credentials file at `path`. */
export async function readCredentialsFile(path: string): Promise<Credential[]> {
  return parseCredentials(await readFile(path, "utf8"));
}

export interface CredentialStore {
  /** The credential `name` whose password is `password`, else undefined. */
  authenticate(name: string, password: string): Promise<Credential | undefined>;
  /** The credential named `name` (for a verified client certificate), else undefined. */
  get(name: string): Credential | undefined;
  /** Puts `credentials` in place of the current ones (a reload); calls in flight are unaffected. */
  replace(credentials: readonly Credential[]): void;
  readonly size: number;
}

export function createCredentialStore(initial: readonly Credential[]): CredentialStore {
  let byName = new Map<string, Credential>();
  /** Per credential: the hash it was verified against, and an HMAC of the password that matched. */
  const verified = new Map<string, { passwordHash: string; digest: Buffer }>();
  const key = randomBytes(32);
  const digestOf = (password: string) => createHmac("sha256", key).update(password).digest();
  /** A hash to verify against for unknown names, so that they take as long as known ones. */
  const decoy =
    "$scrypt$ln=15,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

  const store: CredentialStore = {
    async authenticate(name, password) {
      const credential = byName.get(name);
      if (credential === undefined) {
        await verifyPassword(password, decoy);
        return undefined;
      }
      const digest = digestOf(password);
      const known = verified.get(name);
      if (
        known !== undefined &&
        known.passwordHash === credential.passwordHash &&
        timingSafeEqual(known.digest, digest)
      ) {
        return credential;
      }
      // A wrong password always pays the full scrypt cost: guessing stays slow.
      if (!(await verifyPassword(password, credential.passwordHash))) return undefined;
      // Only the current hash is remembered (a reload may have changed it meanwhile).
      if (byName.get(name) === credential) {
        verified.set(name, { passwordHash: credential.passwordHash, digest });
      }
      return credential;
    },
    get: (name) => byName.get(name),
    replace(credentials) {
      byName = new Map(credentials.map((c) => [c.name, c]));
      for (const name of verified.keys()) if (!byName.has(name)) verified.delete(name);
    },
    get size() {
      return byName.size;
    },
  };
  store.replace(initial);
  return store;
}
