/**
 * What every benchmark needs: settings from the environment, progress on
 * stderr, cleanup on success, failure or a signal, a private MariaDB, a
 * Connect client for the gateway, and the markdown result on stdout and in
 * bench/out/.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import mysql, { type RowDataPacket } from "mysql2/promise";
import { DatabaseService } from "../../gen/sqlgate/v1/database_pb.js";
import { type EmbeddedMysql, startEmbeddedMysql } from "../../server/devdb/embedded-mysql.js";
import { median } from "./load.js";

/** A number from the environment variable `name`, else `fallback`. */
export function setting(name: string, fallback: number, min = Number.MIN_VALUE): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!(value >= min))
    throw new Error(`${name}=${JSON.stringify(text)}: expected a number >= ${min}`);
  return value;
}

export const log = (message: string) => process.stderr.write(`bench: ${message}\n`);

/** Cleanup steps, run last-in first-out once, on success, failure or a signal. */
const cleanups: (() => Promise<void>)[] = [];
let cleaning: Promise<void> | undefined;

export function onCleanup(step: () => Promise<void>): void {
  cleanups.push(step);
}

function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (err) {
        log(`cleanup: ${String(err)}`);
      }
    }
  })();
  return cleaning;
}

/** Runs a benchmark's `main`, then the cleanups; a failure sets the exit code. */
export async function runBenchmark(main: () => Promise<void>): Promise<void> {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => void cleanUp().finally(() => process.exit(130)));
  }
  try {
    await main();
  } catch (err) {
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  } finally {
    await cleanUp();
  }
  // A client library's timer can outlive its call (connect-node's deadline
  // timer of a cancelled stream, set to the call's one-hour timeout): the
  // benchmark is over, so nothing is left to wait for.
  process.exit();
}

export interface BenchDatabase {
  readonly db: EmbeddedMysql;
  /** A temporary directory, removed at cleanup; also the gateway's data directory. */
  readonly dataDir: string;
  readonly serverVersion: string;
}

/** A private MariaDB in a temporary directory, with a `bench` database (and `serverArgs`). */
export async function startBenchDatabase(
  serverArgs: readonly string[] = [],
): Promise<BenchDatabase> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-bench-"));
  onCleanup(async () => rmSync(dataDir, { recursive: true, force: true }));
  log(`starting MariaDB in ${dataDir}`);
  const db = await startEmbeddedMysql({ dataDir, database: "bench", serverArgs });
  onCleanup(() => db.stop());
  const conn = await mysql.createConnection({ socketPath: db.socketPath, user: "root" });
  const [rows] = await conn.query<RowDataPacket[]>("SELECT VERSION() AS v");
  await conn.end();
  return { db, dataDir, serverVersion: String(rows[0]?.v) };
}

/** A client of the gateway at `baseUrl`: Connect, binary, over h2c. */
export function gatewayClient(baseUrl: string): Client<typeof DatabaseService> {
  const sessionManager = new Http2SessionManager(baseUrl);
  onCleanup(async () => sessionManager.abort());
  return createClient(
    DatabaseService,
    createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sessionManager }),
  );
}

/** A line describing the machine, for the top of a report. */
export function machineLine(serverVersion: string): string {
  return (
    `Node ${process.version}, MariaDB ${serverVersion}, ${os.cpus().length} cores, ` +
    `load average ${os.loadavg()[0]?.toFixed(2)}`
  );
}

/** Prints `markdown` and writes it to bench/out/`fileName`. */
export function writeReport(fileName: string, markdown: string): void {
  process.stdout.write(markdown);
  const outDir = fileURLToPath(new URL("../../../bench/out/", import.meta.url));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, fileName), markdown);
  log(`written to ${path.join(outDir, fileName)}`);
}

/** One headline figure of a benchmark, for bench/RESULTS.md (see bench/report.ts). */
export interface Figure {
  /** The benchmark's section, e.g. "Point query". */
  readonly benchmark: string;
  /** What was measured, e.g. "Connect binary h2c, 64 callers: q/s ratio to direct". */
  readonly name: string;
  /** "x" for a ratio to direct mysql2, else the unit ("ms", "rows/s", "MB"). */
  readonly unit: string;
  /** The median over the runs, and the lowest and highest run. */
  readonly median: number;
  readonly min: number;
  readonly max: number;
  /** The goal from the design, if this figure has one. */
  readonly goal?: { readonly op: ">=" | "<"; readonly value: number };
}

/** The median, lowest and highest of `values`, as a Figure's numbers. */
export function spread(values: readonly number[]): Pick<Figure, "median" | "min" | "max"> {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}

/** Writes a benchmark's headline figures to bench/out/`fileName` (JSON). */
export function writeFigures(fileName: string, figures: readonly Figure[]): void {
  const outDir = fileURLToPath(new URL("../../../bench/out/", import.meta.url));
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, fileName), `${JSON.stringify(figures, null, 2)}\n`);
}
