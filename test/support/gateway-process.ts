/**
 * The real entry point (`server/main.ts`) as a child process, for tests of
 * what only a process can show: start-up, signals, and crashes (SIGKILL).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface GatewayChild {
  readonly child: ChildProcess;
  /** `http://127.0.0.1:<port>` once listening. */
  readonly baseUrl: string;
  /** Everything the process printed on stdout so far. */
  output(): string;
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
}

/** Waits for a line matching `pattern` on `child`'s stdout; `seen` collects the output. */
export function waitForLog(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs: number,
  seen: { text: string } = { text: "" },
): Promise<string> {
  return new Promise((resolve, reject) => {
    const check = () => seen.text.split("\n").find((l) => pattern.test(l));
    const timer = setTimeout(
      () => reject(new Error(`no ${pattern} within ${timeoutMs} ms:\n${seen.text}`)),
      timeoutMs,
    );
    const onData = (chunk: string) => {
      seen.text += chunk;
      const line = check();
      if (line !== undefined) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve(line);
      }
    };
    child.stdout?.setEncoding("utf8").on("data", onData);
    child.once("exit", (code) =>
      reject(new Error(`exited with ${code} before ${pattern}:\n${seen.text}`)),
    );
  });
}

/**
 * Starts the gateway with `env` on top of the parent's, and waits until it
 * listens. Without SQLGATE_DATA_DIR it gets a temporary one of its own.
 */
export async function startGatewayChild(
  t: { after(fn: () => unknown): void },
  env: Record<string, string>,
): Promise<GatewayChild> {
  let dataDir = env.SQLGATE_DATA_DIR;
  if (dataDir === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-child-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    dataDir = dir;
  }
  const child = spawn(process.execPath, ["--import", "tsx", "server/main.ts"], {
    env: { ...process.env, SQLGATE_LISTEN: "127.0.0.1:0", SQLGATE_DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => child.kill("SIGKILL"));
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  const seen = { text: "" };
  const listening = await waitForLog(child, /sqlgate listening on/, 60_000, seen);
  child.stdout?.on("data", (chunk: string) => {
    seen.text += chunk;
  });
  const baseUrl = /(https?:\/\/[\d.]+:\d+)/.exec(listening)?.[1];
  if (baseUrl === undefined) throw new Error(`no address in ${listening}`);
  return { child, baseUrl, output: () => seen.text, exited };
}
