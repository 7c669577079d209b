/**
 * The embedded default database: a private MariaDB (or MySQL) server that the
 * gateway initialises, starts and stops itself when no SQLGATE_MYSQL_URL is
 * given, so that `npm start` works on a fresh machine and tests run against a
 * real server. Its files live under `<dataDir>/mysql/`; it listens on a private
 * Unix socket and on a loopback TCP port, so a person can also connect the
 * `mariadb` client to it.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2";

const run = promisify(execFile);

export interface EmbeddedMysql {
  /** A `mysql://` URL for the default database over the Unix socket. */
  readonly url: string;
  readonly socketPath: string;
  readonly port: number;
  readonly database: string;
  /** The server's process id. */
  readonly pid: number;
  /** Shuts the server down cleanly and waits for it to exit. */
  stop(): Promise<void>;
}

export interface EmbeddedMysqlOptions {
  /** The gateway's data directory; the server's files go to `<dataDir>/mysql`. */
  readonly dataDir: string;
  /** The database created for users (default `sqlgate`). */
  readonly database?: string;
  /** A fixed TCP port; default: a free port chosen at start. */
  readonly port?: number;
  /** Progress messages for people. */
  readonly log?: (message: string) => void;
  /** More server options (tests: `--ssl-cert=...`, `--require-secure-transport=ON`). */
  readonly serverArgs?: readonly string[];
}

const searchDirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec"];

/** The first executable named one of `names` on PATH or in the usual system directories. */
function findProgram(names: readonly string[]): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(path.delimiter).filter(Boolean), ...searchDirs];
  for (const name of names) {
    for (const dir of dirs) {
      const candidate = path.join(dir, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/** Thrown when no server binary is installed, with the command that installs one. */
export class NoMysqlServerError extends Error {
  constructor() {
    super(
      "no MariaDB or MySQL server binary (mariadbd or mysqld) was found.\n" +
        "  Install one (Debian/Ubuntu: `sudo apt-get install -y mariadb-server`, or run\n" +
        "  `scripts/ensure-mysql.sh` as root), or set SQLGATE_MYSQL_URL to an existing server.",
    );
    this.name = "NoMysqlServerError";
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address() as net.AddressInfo;
      probe.close(() => resolve(address.port));
    });
  });
}

/** Unix socket paths are limited to ~107 bytes; fall back to the temp directory. */
function socketPathFor(dir: string): string {
  const preferred = path.join(dir, "mysqld.sock");
  if (Buffer.byteLength(preferred) < 100) return preferred;
  const hash = createHash("sha256").update(dir).digest("hex").slice(0, 12);
  return path.join(os.tmpdir(), `sqlgate-${hash}.sock`);
}

/** Whether process `pid` exists (signal 0 checks without signalling). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

/** Whether process `pid` is a MariaDB/MySQL server on `dataDir` (not a reused pid). */
function isOurServer(pid: number, dataDir: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return /mariadbd|mysqld/.test(cmdline) && cmdline.includes(`--datadir=${dataDir}`);
  } catch {
    return false;
  }
}

/** A server left running by a gateway that was killed: stop it before starting ours. */
async function stopLeftover(
  pidFile: string,
  dataDir: string,
  log: (m: string) => void,
): Promise<void> {
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid) || !isOurServer(pid, dataDir)) return;
  log(`stopping a leftover embedded database server (pid ${pid})`);
  process.kill(pid, "SIGTERM");
  if (!(await waitForExit(pid, 30_000))) process.kill(pid, "SIGKILL");
}

async function initialise(
  server: string,
  dataDir: string,
  tmpDir: string,
  log: (m: string) => void,
): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  const isRoot = process.getuid?.() === 0;
  const installDb = findProgram(["mariadb-install-db", "mysql_install_db"]);
  log(`initialising a new embedded database in ${dataDir}`);
  if (path.basename(server) === "mariadbd" && installDb !== undefined) {
    await run(installDb, [
      "--no-defaults",
      `--datadir=${dataDir}`,
      ...(isRoot ? ["--user=root"] : []),
      "--auth-root-authentication-method=normal",
      "--skip-test-db",
      `--tmpdir=${tmpDir}`,
    ]);
  } else {
    // MySQL 5.7+ initialises itself; root@localhost gets an empty password.
    await run(server, [
      "--no-defaults",
      "--initialize-insecure",
      `--datadir=${dataDir}`,
      `--tmpdir=${tmpDir}`,
      ...(isRoot ? ["--user=root"] : []),
    ]);
  }
}

function ping(socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = mysql.createConnection({ socketPath, user: "root", connectTimeout: 1000 });
    conn.on("error", () => {});
    conn.query("SELECT 1", (err) => {
      conn.destroy();
      if (err) reject(err);
      else resolve();
    });
  });
}

function adminQuery(socketPath: string, sql: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = mysql.createConnection({ socketPath, user: "root" });
    conn.on("error", () => {});
    conn.query(sql, (err) => {
      conn.end();
      if (err) reject(err);
      else resolve();
    });
  });
}

/** Starts the embedded server, initialising it on first use. */
export async function startEmbeddedMysql(options: EmbeddedMysqlOptions): Promise<EmbeddedMysql> {
  const log = options.log ?? (() => {});
  const server = findProgram(["mariadbd", "mysqld"]);
  if (server === undefined) throw new NoMysqlServerError();

  const dir = path.resolve(options.dataDir, "mysql");
  const dataDir = path.join(dir, "data");
  const pidFile = path.join(dir, "mysqld.pid");
  const errorLog = path.join(dir, "mysqld.err");
  const socketPath = socketPathFor(dir);
  const filesDir = path.join(dir, "files");
  // A private tmpdir: a server starting up deletes every `#sql*` file in its
  // tmpdir, which in a shared /tmp are other servers' temporary tables.
  const tmpDir = path.join(dir, "tmp");
  const database = options.database ?? "sqlgate";
  mkdirSync(filesDir, { recursive: true });
  mkdirSync(tmpDir, { recursive: true });
  await stopLeftover(pidFile, dataDir, log);
  if (!existsSync(path.join(dataDir, "mysql"))) await initialise(server, dataDir, tmpDir, log);

  const port = options.port ?? (await freePort());
  const isRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(
    server,
    [
      "--no-defaults",
      `--datadir=${dataDir}`,
      `--socket=${socketPath}`,
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      `--pid-file=${pidFile}`,
      `--log-error=${errorLog}`,
      "--skip-name-resolve",
      "--local-infile=1",
      // Server-side file access (LOAD DATA INFILE, SELECT ... INTO OUTFILE,
      // LOAD_FILE()) is confined to an empty private directory.
      `--secure-file-priv=${filesDir}`,
      `--tmpdir=${tmpDir}`,
      "--character-set-server=utf8mb4",
      "--collation-server=utf8mb4_general_ci",
      "--max-connections=2000",
      ...(isRoot ? ["--user=root"] : []),
      ...(options.serverArgs ?? []),
    ],
    { stdio: ["ignore", "ignore", openSync(errorLog, "a")] },
  );
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited) {
      const tail = readFileSync(errorLog, "utf8").split("\n").slice(-15).join("\n");
      throw new Error(
        `the embedded database server exited during start-up; its log ends:\n${tail}`,
      );
    }
    try {
      await ping(socketPath);
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`the embedded database server did not answer within 60 s: ${String(err)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await adminQuery(socketPath, `CREATE DATABASE IF NOT EXISTS \`${database.replace(/`/g, "``")}\``);

  const pid = child.pid ?? 0;
  return {
    url: `mysql://root@localhost/${encodeURIComponent(database)}?socket=${encodeURIComponent(socketPath)}`,
    socketPath,
    port,
    database,
    pid,
    async stop() {
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await done;
      clearTimeout(timer);
    },
  };
}
