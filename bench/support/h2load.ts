/**
 * Drives a unary call with h2load (Debian's nghttp2-client; see
 * scripts/ensure-h2load.sh): `connections` h2c (or HTTP/1.1) connections with
 * `streams` calls in flight on each, the same request body every time, for `seconds`.
 * Latencies come from h2load's per-request log; its CPU from this process's
 * reaped children's times (/proc/self/stat), since it has exited by then.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { LoadResult } from "./load.js";
import { childrenCpuMicros } from "./proc-cpu.js";

const run = promisify(execFile);

export interface H2loadOptions {
  readonly url: string;
  readonly body: Uint8Array;
  readonly headers: Readonly<Record<string, string>>;
  readonly connections: number;
  readonly streams: number;
  readonly seconds: number;
  /**
   * Send exactly this many calls instead (they take about `seconds`): with a
   * duration h2load stops counting calls still in flight at its end, which
   * the server may complete (a write then lands without being counted).
   */
  readonly requests?: number | undefined;
  /** HTTP/1.1 instead of h2c (`streams` is then 1). */
  readonly http1?: boolean;
}

export interface H2loadResult extends LoadResult {
  /** h2load's own CPU, microseconds. */
  readonly clientCpuMicros: number;
  /** Calls that did not end with HTTP 200. */
  readonly failed: number;
}

export async function runH2load(options: H2loadOptions): Promise<H2loadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-h2load-"));
  try {
    const bodyFile = path.join(dir, "body");
    const logFile = path.join(dir, "log");
    writeFileSync(bodyFile, options.body);
    const args = [
      options.requests === undefined
        ? `--duration=${options.seconds}`
        : `--requests=${options.requests}`,
      "--threads=1",
      `--clients=${options.connections}`,
      `--max-concurrent-streams=${options.streams}`,
      `--data=${bodyFile}`,
      `--log-file=${logFile}`,
      ...(options.http1 ? ["--h1"] : []),
      ...Object.entries(options.headers).map(([k, v]) => `--header=${k}: ${v}`),
      options.url,
    ];
    const cpuBefore = childrenCpuMicros();
    const { stdout } = await run("h2load", args, { maxBuffer: 16 * 1024 * 1024 });
    const clientCpuMicros = childrenCpuMicros() - cpuBefore;
    const lines = readFileSync(logFile, "utf8").split("\n").filter(Boolean);
    const latencies: number[] = [];
    let failed = 0;
    let first = Number.POSITIVE_INFINITY;
    let last = 0;
    for (const line of lines) {
      const [start, status, micros] = line.split("\t").map(Number) as [number, number, number];
      if (status !== 200) {
        failed += 1;
        continue;
      }
      latencies.push(micros / 1000);
      first = Math.min(first, start);
      last = Math.max(last, start + micros);
    }
    if (latencies.length === 0) throw new Error(`h2load made no successful call:\n${stdout}`);
    const seconds = (last - first) / 1e6;
    return {
      calls: latencies.length,
      seconds,
      rate: latencies.length / seconds,
      latenciesMs: Float64Array.from(latencies).sort(),
      clientCpuMicros,
      failed,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
