/**
 * The real gateway (`dist/server/main.js`) as a child process, so that its CPU
 * is separate from the load generator's as in production.
 */
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";

export interface GatewayProcess {
  readonly pid: number;
  readonly baseUrl: string;
  /** SIGTERM, then SIGKILL if it has not exited within 10 s. */
  stop(): Promise<void>;
}

export interface GatewayProcessOptions {
  readonly mysqlUrl: string;
  readonly poolSize: number;
  readonly dataDir: string;
  /** Extra SQLGATE_* settings. */
  readonly env?: Readonly<Record<string, string>>;
  /** A port chosen beforehand (to name it to other replicas); default: a free one. */
  readonly port?: number;
  /** Extra node options, e.g. `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

export async function startGatewayProcess(options: GatewayProcessOptions): Promise<GatewayProcess> {
  const mainJs = fileURLToPath(new URL("../../server/main.js", import.meta.url));
  const port = options.port ?? (await freePort());
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), mainJs], {
    env: {
      ...process.env,
      SQLGATE_MYSQL_URL: options.mysqlUrl,
      SQLGATE_LISTEN: `127.0.0.1:${port}`,
      SQLGATE_POOL_SIZE: String(options.poolSize),
      SQLGATE_LOG_LEVEL: "warn",
      SQLGATE_DATA_DIR: options.dataDir,
      ...options.env,
    },
    // The gateway's own output goes to stderr, keeping stdout for the results.
    stdio: ["ignore", 2, 2],
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited(child);
    clearTimeout(timer);
  };

  const deadline = Date.now() + 30_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the gateway exited during start-up (${child.exitCode ?? child.signalCode})`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("the gateway did not listen within 30 s");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { pid: child.pid ?? 0, baseUrl: `http://127.0.0.1:${port}`, stop };
}
