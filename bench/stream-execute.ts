/**
 * StreamExecute benchmark: a large result (MariaDB's Sequence engine, 10
 * million rows by default) read through the gateway (Connect binary over h2c,
 * the gateway in its own process) against direct mysql2 streaming, in one run
 * on one private MariaDB, 3 times each way, alternating. The gateway's reads
 * use a lean reader that counts rows without decoding them
 * (support/lean-stream-reader.ts), after connect-node's client has checked
 * the first rows equal to mysql2's. Then a slow connect-node reader stalls
 * and reads at a fraction of the fast rate for a while, to check that
 * backpressure keeps the gateway's memory flat. The gateway's RSS (VmRSS) is
 * sampled every 100 ms throughout.
 *
 *   BENCH_ONLY=stream npm run bench
 *   BENCH_ONLY=stream BENCH_STREAM_ROWS=200000 npm run bench
 *
 * Settings (environment): BENCH_STREAM_ROWS (10000000), BENCH_RUNS (3),
 * BENCH_SLOW_FACTOR (5: the slow reader reads at the fast gateway rate divided
 * by this), BENCH_SLOW_STALL_SECONDS (3: the slow reader stalls this long
 * after the first message), BENCH_SLOW_SECONDS (10: how long it reads),
 * BENCH_GATEWAY_NODE_ARGS (extra node options for the gateway). Prints a
 * markdown table and writes it to bench/out/stream-execute.md, its headline
 * figures to stream-execute.json.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import mysql from "mysql2";
import { DatabaseService, StreamExecuteRequestSchema } from "../gen/sqlgate/v1/database_pb.js";
import type { Row } from "../gen/sqlgate/v1/value_pb.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import {
  gatewayClient,
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  spread,
  startBenchDatabase,
  writeFigures,
  writeReport,
} from "./support/harness.js";
import { readStreamLean } from "./support/lean-stream-reader.js";
import { median } from "./support/load.js";
import { ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";
import { type RssSampler, sampleRss } from "./support/proc-rss.js";

const rowCount = Math.round(setting("BENCH_STREAM_ROWS", 10_000_000, 1));
const slowFactor = setting("BENCH_SLOW_FACTOR", 5, 1);
const stallSeconds = setting("BENCH_SLOW_STALL_SECONDS", 3, 0);
const slowSeconds = setting("BENCH_SLOW_SECONDS", 10, 1);
const runs = Math.round(setting("BENCH_RUNS", 3));
const checkRows = Math.min(rowCount, 100_000);
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
function readDirect(conn: mysql.Connection, query: string): Promise<Read> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let rows = 0;
    let first: unknown[] = [];
    let last: unknown[] = [];
    conn
      .execute({ sql: query, rowsAsArray: true })
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

/**
 * Reads a result through the gateway's StreamExecute with connect-node's
 * client (every row decoded), as fast as `pace` lets it, for at most
 * `forSeconds` (then the call is cancelled).
 */
async function readGateway(
  client: Client<typeof DatabaseService>,
  query: string,
  pace?: Pace,
  forSeconds = Number.POSITIVE_INFINITY,
): Promise<Read> {
  const text = (row: Row | undefined) => row?.values.map((v) => String(v.kind.value)).join("|");
  const started = performance.now();
  const stop = new AbortController();
  let rows = 0;
  let first: Row | undefined;
  let last: Row | undefined;
  try {
    for await (const message of client.streamExecute(
      { sql: query },
      { timeoutMs, signal: stop.signal },
    )) {
      first ??= message.rows[0];
      last = message.rows[message.rows.length - 1] ?? last;
      rows += message.rows.length;
      const elapsed = (performance.now() - started) / 1000;
      if (elapsed >= forSeconds) {
        stop.abort();
        break;
      }
      await pace?.(rows, elapsed);
    }
  } catch (err) {
    if (!stop.signal.aborted) throw err;
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
  const streamPath = `/${DatabaseService.typeName}/${DatabaseService.method.streamExecute.name}`;
  const readLean = async (query: string): Promise<Read> => {
    const body = toBinary(
      StreamExecuteRequestSchema,
      create(StreamExecuteRequestSchema, { sql: query }),
    );
    const read = await readStreamLean(gateway.baseUrl, streamPath, body, timeoutMs);
    return { ...read, first: "", last: "" };
  };

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
        `${Math.round(result.rows / result.seconds)} rows/s`,
    );
    return {
      name,
      ...result,
      clientCpu,
      gatewayCpu: onGateway ? gatewayCpu : Number.NaN,
      maxRssBytes: onGateway ? rss.max(name) : Number.NaN,
    };
  };

  // The rows themselves, decoded by connect-node's client, must equal
  // mysql2's for the first checkRows; the timed reads then count rows.
  const checkSql = `${sql} LIMIT ${checkRows}`;
  log(`checking both paths with the first ${checkRows} rows (connect-node decoding every row)`);
  const checkDirect = await readDirect(direct, checkSql);
  const checkGateway = await readGateway(client, checkSql);
  for (const [what, a, b] of [
    ["row count", checkDirect.rows, checkGateway.rows],
    ["first row", checkDirect.first, checkGateway.first],
    ["last row", checkDirect.last, checkGateway.last],
  ] as const) {
    if (a !== b || a === 0 || a === "") {
      throw new Error(`sanity check failed: ${what}: direct ${a}, gateway ${b}`);
    }
  }
  // Warm-up: V8 tiers the per-row code up over the first million rows or so.
  const warmupSql = `${sql} LIMIT ${Math.min(rowCount, 1_000_000)}`;
  await measure("warm-up, direct", () => readDirect(direct, warmupSql), false);
  await measure("warm-up, gateway", () => readLean(warmupSql), true);

  const directRuns: Measured[] = [];
  const gatewayRuns: Measured[] = [];
  for (let run = 1; run <= runs; run++) {
    directRuns.push(
      await measure(`direct mysql2, run ${run}/${runs}`, () => readDirect(direct, sql), false),
    );
    const gatewayRun = await measure(`gateway, run ${run}/${runs}`, () => readLean(sql), true);
    if (gatewayRun.rows !== rowCount) {
      throw new Error(`the gateway delivered ${gatewayRun.rows} rows of ${rowCount}`);
    }
    gatewayRuns.push(gatewayRun);
  }
  const fastRate = median(gatewayRuns.map((r) => r.rows / r.seconds));
  const slowRate = fastRate / slowFactor;
  const slow = await measure(
    `gateway, slow reader (connect-node; ${stallSeconds} s stall, then <= ${Math.round(slowRate).toLocaleString("en-US")} rows/s for ${slowSeconds} s)`,
    () => readGateway(client, sql, slowPace(slowRate), slowSeconds),
    true,
  );
  rss.stop();

  const ratios = gatewayRuns.map(
    (g, i) => g.rows / g.seconds / ((directRuns[i]?.rows ?? 0) / (directRuns[i]?.seconds ?? 1)),
  );
  const maxRss = rss.max();
  writeReport(
    "stream-execute.md",
    report(directRuns, gatewayRuns, slow, ratios, serverVersion, rss.max("start"), maxRss),
  );
  writeFigures("stream-execute.json", [
    {
      benchmark: "StreamExecute",
      name: `${(rowCount / 1e6).toLocaleString("en-US")}M rows, lean reader: rows/s ratio to direct`,
      unit: "x",
      ...spread(ratios),
      goal: { op: ">=", value: ratioGoal },
    },
    {
      benchmark: "StreamExecute",
      name: "gateway max RSS over the whole run (fast and slow readers)",
      unit: "MB",
      ...spread([maxRss / 2 ** 20]),
      goal: { op: "<", value: rssGoalMb },
    },
  ]);
}

function report(
  directRuns: readonly Measured[],
  gatewayRuns: readonly Measured[],
  slow: Measured,
  ratios: readonly number[],
  serverVersion: string,
  idleRssBytes: number,
  maxRssBytes: number,
): string {
  const mb = (bytes: number) => (Number.isFinite(bytes) ? (bytes / 2 ** 20).toFixed(1) : "-");
  const rate = (r: Read) => Math.round(r.rows / r.seconds).toLocaleString("en-US");
  const row = (r: Measured, ratio: string) =>
    `| ${r.name} | ${r.rows.toLocaleString("en-US")} | ${r.seconds.toFixed(2)} | ${rate(r)} | ` +
    `${ratio} | ${r.clientCpu.toFixed(1)} | ` +
    `${Number.isNaN(r.gatewayCpu) ? "-" : r.gatewayCpu.toFixed(1)} | ${mb(r.maxRssBytes)} |`;
  const ratio = median(ratios);
  const lines = [
    `## StreamExecute (${rowCount.toLocaleString("en-US")} rows), ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}. \`${sql}\`. Direct: mysql2 \`execute\` with row events. ` +
      "Gateway: the lean reader (Connect streaming, binary, on node:http2, counting rows " +
      "without decoding them; see bench/support/lean-stream-reader.ts), after the first " +
      `${checkRows.toLocaleString("en-US")} rows were checked equal to mysql2's with connect-node ` +
      `decoding every row. ${runs} run(s) each way, alternating, after a 1M-row warm-up. ` +
      `Gateway RSS (VmRSS) sampled every 100 ms; ${mb(idleRssBytes)} MB idle at start.`,
    "",
    "| path | rows | seconds | rows/s | ratio to direct (same run) | reader CPU s | gateway CPU s | max gateway RSS MB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...directRuns.map((r) => row(r, "1")),
    ...gatewayRuns.map((r, i) => row(r, (ratios[i] ?? Number.NaN).toFixed(3))),
    row(slow, "-"),
    "",
    `Goals: gateway >= ${ratioGoal}x direct rows/s (median of per-run ratios): ` +
      `${ratio >= ratioGoal ? "met" : "not met"} (${ratio.toFixed(3)}, ` +
      `${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}); ` +
      `gateway RSS < ${rssGoalMb} MB throughout: ` +
      `${maxRssBytes < rssGoalMb * 2 ** 20 ? "met" : "not met"} (max ${mb(maxRssBytes)} MB ` +
      "over the whole run, slow reader included).",
    "",
  ];
  return lines.join("\n");
}

await runBenchmark(main);
