/**
 * StreamExecute benchmark: a large result (MariaDB's Sequence engine, 10
 * million rows by default) read through the gateway (Connect binary over h2c,
 * the gateway in its own process) against direct mysql2 streaming, in one run
 * on one private MariaDB; then through the gateway again with a slow reader,
 * to check that backpressure keeps the gateway's memory flat. The gateway's
 * RSS (VmRSS) is sampled every 100 ms throughout.
 *
 *   npm run bench                                  # point query, then this
 *   BENCH_ONLY=stream BENCH_STREAM_ROWS=200000 npm run bench
 *
 * Settings (environment): BENCH_STREAM_ROWS (10000000), BENCH_SLOW_FACTOR (5:
 * the slow reader reads at the fast gateway rate divided by this),
 * BENCH_SLOW_STALL_SECONDS (3: the slow reader stalls this long after the
 * first message), BENCH_GATEWAY_NODE_ARGS (extra node options for the
 * gateway). Prints a markdown table and writes it to bench/out/stream-execute.md.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Client } from "@connectrpc/connect";
import mysql from "mysql2";
import type { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import type { Row } from "../gen/sqlgate/v1/value_pb.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import {
  gatewayClient,
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  startBenchDatabase,
  writeReport,
} from "./support/harness.js";
import { ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";
import { type RssSampler, sampleRss } from "./support/proc-rss.js";

const rowCount = Math.round(setting("BENCH_STREAM_ROWS", 10_000_000, 1));
const slowFactor = setting("BENCH_SLOW_FACTOR", 5, 1);
const stallSeconds = setting("BENCH_SLOW_STALL_SECONDS", 3, 0);
const gatewayNodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
const sql = `SELECT seq, CONCAT('row-', seq), seq * 1.5 FROM seq_1_to_${rowCount}`;
/** The calls' deadline (Connect-Timeout-Ms): long enough for the slow reader. */
const timeoutMs = 3_600_000;
const rssGoalMb = 150;
const ratioGoal = 0.7;

/** What one read of the whole result saw. */
interface Read {
  readonly rows: number;
  readonly seconds: number;
  /** The first and last rows, each as its cells' text joined by "|". */
  readonly first: string;
  readonly last: string;
}

/**
 * Reads the result with mysql2's fastest streaming path: `execute` (the binary
 * protocol, as the gateway uses) with a row event handler, no Readable in between.
 */
function readDirect(conn: mysql.Connection): Promise<Read> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let rows = 0;
    let first: unknown[] = [];
    let last: unknown[] = [];
    conn
      .execute({ sql, rowsAsArray: true })
      .on("result", (row: unknown) => {
        if (rows++ === 0) first = row as unknown[];
        last = row as unknown[];
      })
      .on("error", reject)
      .on("end", () => {
        const seconds = (performance.now() - started) / 1000;
        resolve({ rows, seconds, first: first.join("|"), last: last.join("|") });
      });
  });
}

/** Called after each message with the rows read so far; may wait to slow the reader. */
type Pace = (rows: number, elapsedSeconds: number) => Promise<void> | undefined;

/** Reads the result through the gateway's StreamExecute, as fast as `pace` lets it. */
async function readGateway(client: Client<typeof DatabaseService>, pace?: Pace): Promise<Read> {
  const text = (row: Row | undefined) => row?.values.map((v) => String(v.kind.value)).join("|");
  const started = performance.now();
  let rows = 0;
  let first: Row | undefined;
  let last: Row | undefined;
  for await (const message of client.streamExecute({ sql }, { timeoutMs })) {
    first ??= message.rows[0];
    last = message.rows[message.rows.length - 1] ?? last;
    rows += message.rows.length;
    await pace?.(rows, (performance.now() - started) / 1000);
  }
  const seconds = (performance.now() - started) / 1000;
  return { rows, seconds, first: text(first) ?? "", last: text(last) ?? "" };
}

/** The slow reader: one message, a stall, then `rate` rows/s at most. */
function slowPace(rate: number): Pace {
  return (rows, elapsed) => {
    const due = stallSeconds + rows / rate;
    return due > elapsed ? sleep((due - elapsed) * 1000) : undefined;
  };
}

interface Measured extends Read {
  readonly name: string;
  /** CPU seconds of this process (the reader) during the read. */
  readonly clientCpu: number;
  /** The gateway's CPU seconds and highest RSS during the read (NaN for direct). */
  readonly gatewayCpu: number;
  readonly maxRssBytes: number;
}

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const direct = mysql.createConnection({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
  });
  onCleanup(() => new Promise((resolve) => direct.end(() => resolve())));

  log("starting the gateway (node dist/server/main.js)");
  const gateway = await startGatewayProcess({
    mysqlUrl: db.url,
    poolSize: 4,
    dataDir,
    env: { SQLGATE_MAX_TIMEOUT_MS: String(timeoutMs) },
    nodeArgs: gatewayNodeArgs,
  });
  onCleanup(() => gateway.stop());
  const rss: RssSampler = sampleRss(gateway.pid);
  onCleanup(async () => rss.stop());
  const client = gatewayClient(gateway.baseUrl);

  const measure = async (
    name: string,
    read: () => Promise<Read>,
    onGateway: boolean,
  ): Promise<Measured> => {
    rss.phase(name);
    const cpuBefore = [ownCpuMicros(), processCpuMicros(gateway.pid)] as const;
    const result = await read();
    const clientCpu = (ownCpuMicros() - cpuBefore[0]) / 1e6;
    const gatewayCpu = (processCpuMicros(gateway.pid) - cpuBefore[1]) / 1e6;
    rss.phase("between");
    log(
      `${name}: ${result.rows} rows in ${result.seconds.toFixed(2)} s, ` +
        `${Math.round(result.rows / result.seconds)} rows/s` +
        (onGateway ? `, gateway RSS sampled ${rss.samples(name)} times` : ""),
    );
    return {
      name,
      ...result,
      clientCpu,
      gatewayCpu: onGateway ? gatewayCpu : Number.NaN,
      maxRssBytes: onGateway ? rss.max(name) : Number.NaN,
    };
  };

  // Both paths must return the same rows before anything is timed; this
  // first read of each also warms up the code on both sides.
  log(`checking (and warming up) both paths with ${rowCount} rows`);
  const checkDirect = await measure("check, direct", () => readDirect(direct), false);
  const checkGateway = await measure("check, gateway", () => readGateway(client), true);
  for (const [what, a, b] of [
    ["row count", checkDirect.rows, checkGateway.rows],
    ["first row", checkDirect.first, checkGateway.first],
    ["last row", checkDirect.last, checkGateway.last],
  ] as const) {
    if (a !== b || a === 0 || a === "") {
      throw new Error(`sanity check failed: ${what}: direct ${a}, gateway ${b}`);
    }
  }
  if (checkDirect.rows !== rowCount) {
    throw new Error(`expected ${rowCount} rows, read ${checkDirect.rows}`);
  }
  log(`both paths read ${rowCount} rows, first ${checkDirect.first}, last ${checkDirect.last}`);

  const directRun = await measure(
    "direct mysql2, execute + row events",
    () => readDirect(direct),
    false,
  );
  const fast = await measure("gateway, fast reader", () => readGateway(client), true);
  const slowRate = fast.rows / fast.seconds / slowFactor;
  const slow = await measure(
    `gateway, slow reader (${stallSeconds} s stall, then <= ${Math.round(slowRate).toLocaleString("en-US")} rows/s)`,
    () => readGateway(client, slowPace(slowRate)),
    true,
  );
  rss.stop();

  writeReport(
    "stream-execute.md",
    report([directRun, fast, slow], serverVersion, rss.max("start"), rss.max()),
  );
}

function report(
  results: readonly Measured[],
  serverVersion: string,
  idleRssBytes: number,
  maxRssBytes: number,
): string {
  const mb = (bytes: number) => (Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(1) : "-");
  const [directRun, fast, slow] = results as [Measured, Measured, Measured];
  const rowsPerSecond = (r: Read) => r.rows / r.seconds;
  const rate = (r: Read) => Math.round(rowsPerSecond(r)).toLocaleString("en-US");
  const ratio = (r: Read) => rowsPerSecond(r) / rowsPerSecond(directRun);
  const lines = [
    `## StreamExecute (${rowCount.toLocaleString("en-US")} rows), ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}. \`${sql}\`; each path read the whole result once ` +
      "(check and warm-up) before the timed reads. Gateway RSS (VmRSS) sampled every 100 ms; " +
      `${mb(idleRssBytes)} MB idle at start.`,
    "",
    "| path | rows | seconds | rows/s | ratio to direct | reader CPU s | gateway CPU s | max gateway RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.rows.toLocaleString("en-US")} | ${r.seconds.toFixed(2)} | ${rate(r)} | ` +
        `${ratio(r).toFixed(3)} | ${r.clientCpu.toFixed(1)} | ` +
        `${Number.isNaN(r.gatewayCpu) ? "-" : r.gatewayCpu.toFixed(1)} | ` +
        `${mb(r.maxRssBytes)} |`,
    ),
    "",
    `Goals: fast reader >= ${ratioGoal}x direct rows/s: ` +
      `${ratio(fast) >= ratioGoal ? "met" : "not met"} (${ratio(fast).toFixed(3)}); ` +
      `gateway RSS < ${rssGoalMb} MB throughout: ` +
      `${maxRssBytes < rssGoalMb * 2 ** 20 ? "met" : "not met"} (max ${mb(maxRssBytes)} MB ` +
      "over the whole run including the check; " +
      `slow reader took ${(slow.seconds / fast.seconds).toFixed(1)}x the fast one).`,
    "",
  ];
  return lines.join("\n");
}

await runBenchmark(main);
