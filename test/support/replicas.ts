/**
 * Several gateway replicas behind HAProxy, for tests of request-level
 * balancing: real gateway processes (`server/main.ts`, as
 * gateway-process.ts starts them) sharing one MySQL database and one token
 * secret, and Debian's HAProxy 2.6 run through scripts/haproxy.sh (so the
 * script and deploy/haproxy/haproxy.cfg are what is tested) in front of them.
 * scripts/ensure-haproxy.sh installs HAProxy. Everything listens on
 * 127.0.0.1 and is stopped by PID when the test ends.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type GatewayChild, startGatewayChild } from "./gateway-process.js";

const script = fileURLToPath(new URL("../../scripts/haproxy.sh", import.meta.url));

interface After {
  after(fn: () => unknown): void;
}

/** One gateway process of a set started by `startReplicas`. */
export interface Replica {
  /** Its name in HAProxy (server line, owners map, `sqlgate-backend`): g1, g2, ... */
  readonly name: string;
  readonly port: number;
  /** `http://127.0.0.1:<port>`: also its SQLGATE_NODE_URL. */
  readonly url: string;
  readonly process: GatewayChild;
  /** Its settings, to start it again as it was (restartReplica). */
  readonly env: Record<string, string>;
}

export interface StartReplicasOptions {
  /** The database all replicas share. */
  readonly mysqlUrl: string;
  /** How many replicas, named g1 ... g<count>. */
  readonly count: number;
  /** Settings for every replica, on top of the ones set here. */
  readonly env?: Record<string, string>;
}

/** `count` distinct free ports on 127.0.0.1, held open together so that none repeats. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once("error", reject);
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

/**
 * Starts `count` gateway processes on ports chosen up front, so that each can
 * be told its own URL (SQLGATE_NODE_URL) and every replica's (SQLGATE_PEERS)
 * before it starts. Each has its own data directory (the ingest log is per
 * process) and all share one SQLGATE_TOKEN_SECRET, as replicas must for a
 * transaction token from one to verify on another. Killed (SIGKILL) when the
 * test ends.
 */
export async function startReplicas(t: After, options: StartReplicasOptions): Promise<Replica[]> {
  const ports = await freePorts(options.count);
  const urls = ports.map((port) => `http://127.0.0.1:${port}`);
  const tokenSecret = randomBytes(24).toString("hex");
  return Promise.all(
    ports.map(async (port, i) => {
      const url = urls[i] as string;
      const env = {
        SQLGATE_MYSQL_URL: options.mysqlUrl,
        SQLGATE_LISTEN: `127.0.0.1:${port}`,
        SQLGATE_NODE_URL: url,
        SQLGATE_PEERS: urls.join(","),
        SQLGATE_TOKEN_SECRET: tokenSecret,
        ...options.env,
      };
      // startGatewayChild gives each its own temporary SQLGATE_DATA_DIR.
      const child = await startGatewayChild(t, env);
      return { name: `g${i + 1}`, port, url, process: child, env };
    }),
  );
}

/** Starts `replica` again (after it stopped) on its port, with its settings. */
export async function restartReplica(t: After, replica: Replica): Promise<Replica> {
  return { ...replica, process: await startGatewayChild(t, replica.env) };
}

/** One server's row of HAProxy's `show stat` (the columns the tests read). */
export interface ServerStat {
  readonly backend: string;
  readonly server: string;
  /** UP, DOWN, MAINT, "UP 1/2" (rising) ... */
  readonly status: string;
  /** The last health check's result: L7OK, L4CON (refused), L7STS (bad status) ... */
  readonly checkStatus: string;
}

export interface TestHaproxy {
  /** `http://127.0.0.1:<port>`: HTTP/1.1 and h2c on one port. */
  readonly baseUrl: string;
  readonly port: number;
  readonly pid: number;
  /** The rendered configuration and owners map live here. */
  readonly stateDir: string;
  /** HAProxy's stdout: the access log (`option httplog`) and server state changes. */
  output(): string;
  /** Every real server's state, from the stats socket. */
  servers(): Promise<ServerStat[]>;
  /**
   * Resolves once `predicate` holds for the servers of backend `gateways`;
   * fails after `timeoutMs`.
   */
  waitForServers(
    predicate: (servers: ServerStat[]) => boolean,
    timeoutMs?: number,
  ): Promise<ServerStat[]>;
}

/**
 * Runs scripts/haproxy.sh in front of `replicas` on a free port, and resolves
 * once every replica is UP after a passing health check. The script `exec`s
 * HAProxy, so the child's PID is HAProxy's: stopped with SIGTERM to that PID
 * when the test ends.
 */
export async function startHaproxy(t: After, replicas: readonly Replica[]): Promise<TestHaproxy> {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-haproxy-"));
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const socket = path.join(stateDir, "haproxy.sock");
  let lastError: unknown;
  // A port picked free can be taken before HAProxy binds it (tests run in
  // parallel): try another one then.
  for (let attempt = 0; attempt < 3; attempt++) {
    const [port] = await freePorts(1);
    const child = spawn(script, [], {
      env: {
        ...process.env,
        SQLGATE_HAPROXY_BACKENDS: replicas.map((r) => `${r.name}=127.0.0.1:${r.port}`).join(" "),
        SQLGATE_HAPROXY_LISTEN: `127.0.0.1:${port}`,
        SQLGATE_HAPROXY_STATE_DIR: stateDir,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    let errors = "";
    child.stdout?.setEncoding("utf8").on("data", (text: string) => {
      output += text;
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      errors += text;
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const haproxy: TestHaproxy = {
      baseUrl: `http://127.0.0.1:${port}`,
      port: port as number,
      pid: child.pid as number,
      stateDir,
      output: () => output,
      servers: () => showStat(socket),
      waitForServers: async (predicate, timeoutMs = 10_000) => {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const servers = (await showStat(socket).catch(() => [])).filter(
            (s) => s.backend === "gateways",
          );
          if (servers.length > 0 && predicate(servers)) return servers;
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`haproxy exited:\n${errors}\n${output}`);
          }
          if (Date.now() > until) {
            throw new Error(
              `haproxy servers not as expected within ${timeoutMs} ms: ${JSON.stringify(servers)}\n${errors}`,
            );
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      },
    };
    try {
      await haproxy.waitForServers(
        (servers) =>
          servers.length === replicas.length &&
          servers.every((s) => s.status === "UP" && s.checkStatus === "L7OK"),
        15_000,
      );
    } catch (err) {
      lastError = err;
      await stop(child, exited);
      continue;
    }
    t.after(() => stop(child, exited));
    return haproxy;
  }
  throw lastError;
}

async function stop(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

/** HAProxy's `show stat` over its stats socket: the servers' rows (not FRONTEND/BACKEND). */
async function showStat(socket: string): Promise<ServerStat[]> {
  const csv = await new Promise<string>((resolve, reject) => {
    let text = "";
    const conn = net.createConnection(socket, () => conn.end("show stat\n"));
    conn.setEncoding("utf8");
    conn.on("data", (chunk: string) => {
      text += chunk;
    });
    conn.once("end", () => resolve(text));
    conn.once("error", reject);
  });
  const [header, ...rows] = csv.split("\n").filter((line) => line !== "");
  const columns = (header ?? "").replace(/^# /, "").split(",");
  const column = (name: string) => columns.indexOf(name);
  return rows
    .map((row) => row.split(","))
    .filter((cells) => !["FRONTEND", "BACKEND"].includes(cells[column("svname")] ?? ""))
    .map((cells) => ({
      backend: cells[column("pxname")] ?? "",
      server: cells[column("svname")] ?? "",
      status: cells[column("status")] ?? "",
      checkStatus: cells[column("check_status")] ?? "",
    }));
}
