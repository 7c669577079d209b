/**
 * Write benchmark: single-row `IngestService.Write` calls from many concurrent
 * callers (1,000 by default), which the gateway merges into few large
 * transactions (group commit), against direct mysql2 single-row autocommit
 * INSERTs from as many callers on a pool of 64 connections, in one run on one
 * private MariaDB. The gateway runs in its own process (compiled JS); the
 * callers reach it with connect-node (Connect, binary, h2c) spread over
 * several HTTP/2 sessions. Gateway variants: COMMITTED without idempotency
 * key, COMMITTED with a key per call, BUFFERED (acknowledged from the
 * write-ahead log; the run also waits until every row is in MySQL); each also
 * from a lean h2 client (support/lean-h2-client.ts), which shows how much of
 * the rate the connect-node load generator itself costs on 2 shared cores,
 * and COMMITTED from h2load (one fixed row per call, ~10 us per call of load
 * generator), which shows the gateway's own capacity.
 *
 *   BENCH_ONLY=ingest-write npm run bench
 *   BENCH_SECONDS=2 BENCH_RUNS=1 node dist/bench/ingest-write.js
 *
 * Settings (environment): BENCH_SECONDS (4), BENCH_RUNS (3), BENCH_CALLERS
 * (1000), BENCH_SESSIONS (4: HTTP/2 sessions to the gateway, callers spread
 * round robin), BENCH_DIRECT_POOL (64), BENCH_DIRECT_METHOD (execute, or
 * query: measured within noise of each other), BENCH_WARMUP_CALLS (10000 per
 * path), BENCH_WARMUP_SECONDS (30, the warm-up's cap), BENCH_VARIANTS (a comma
 * list of direct, committed, keyed, buffered, committed-lean, keyed-lean,
 * buffered-lean, committed-h2load; default direct, committed, committed-lean,
 * buffered-lean, committed-h2load), BENCH_GATEWAY_NODE_ARGS, and
 * any SQLGATE_INGEST_* (passed to the gateway, overriding the values chosen
 * here). Prints a markdown table and writes it to bench/out/ingest-write.md,
 * its headline figures to ingest-write.json.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import mysql from "mysql2/promise";
import {
  Durability,
  IngestService,
  type WriteRequest,
  WriteRequestSchema,
  WriteResponseSchema,
} from "../gen/sqlgate/v1/ingest_pb.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import { runH2load } from "./support/h2load.js";
import {
  type Figure,
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
import {
  type CpuUse,
  countersSince,
  countRows,
  cpuSnapshot,
  cpuUse,
  datetimeText,
  describeSettings,
  disturbedPercent,
  type ErrorTally,
  fmt,
  ingestClients,
  ingestSettings,
  recordError,
  type StatusCounters,
  statusCounters,
  telemetryColumns,
  telemetryDdl,
  telemetryTable,
  waitForRows,
} from "./support/ingest.js";
import { createLeanUnaryClient } from "./support/lean-h2-client.js";
import { type LoadResult, median, percentile, runLoad } from "./support/load.js";
import { type RssSampler, sampleRss } from "./support/proc-rss.js";

const seconds = setting("BENCH_SECONDS", 4);
const runs = Math.round(setting("BENCH_RUNS", 3));
const callers = Math.round(setting("BENCH_CALLERS", 1000));
const sessions = Math.round(setting("BENCH_SESSIONS", 4));
const directPoolSize = Math.round(setting("BENCH_DIRECT_POOL", 64));
const warmupCalls = Math.round(setting("BENCH_WARMUP_CALLS", 10_000, 0));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 30, 0);
const variants = (
  process.env.BENCH_VARIANTS || "direct,committed,committed-lean,buffered-lean,committed-h2load"
).split(",");
const gatewayNodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
const directMethod = process.env.BENCH_DIRECT_METHOD === "query" ? "query" : "execute";
const goalRatio = 1.2;
const goalRate = 15_000;

/**
 * The defaults, stated: with 1,000 callers the queue never empties, so
 * batches fill while the 4 ingest connections are busy (about 200 rows each
 * here) and a longer delay or more connections change nothing measurable; a
 * single-row Write's cost is in the gateway's per-call work, not in MySQL.
 */
const gatewaySettings = ingestSettings({
  SQLGATE_INGEST_CONNECTIONS: "4",
  SQLGATE_INGEST_MAX_DELAY_MS: "2",
  SQLGATE_INGEST_MAX_BATCH_ROWS: "10000",
});

const insertSql = `INSERT INTO ${telemetryTable} (${telemetryColumns.join(", ")}) VALUES (?, ?, ?, ?)`;

interface Target {
  readonly name: string;
  readonly variant: string;
  /** Writes one row, as caller `caller` (also the row's device). */
  readonly op: (caller: number) => Promise<void>;
  /**
   * Drives the whole load itself for `seconds` (h2load), counting its
   * acknowledged calls in `ok`; without it `op` runs from `callers` loops.
   */
  readonly drive?: (seconds: number) => Promise<LoadResult>;
  /** Gateway batches as seen in MariaDB's counters; undefined for direct. */
  readonly batches?: (delta: StatusCounters) => number;
  /** BUFFERED: rows reach MySQL after their acknowledgement. */
  readonly buffered?: boolean;
  readonly errors: ErrorTally;
  /** Calls acknowledged so far (reset before each run). */
  ok: number;
}

interface Sample {
  /** Acknowledged rows per second. */
  readonly rate: number;
  /** Acknowledged rows, and the run's wall time until the last call returned. */
  readonly rows: number;
  readonly seconds: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpu: CpuUse;
  readonly batches: number;
  /** BUFFERED: seconds after the run until every acknowledged row was in MySQL. */
  readonly drainSeconds: number;
  readonly countMismatch: string | undefined;
}

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const direct = mysql.createPool({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
    connectionLimit: directPoolSize,
    // 1,000 callers queue for 64 connections: no cap on the queue.
    queueLimit: 0,
  });
  onCleanup(() => direct.end());
  const admin = mysql.createPool({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
    connectionLimit: 1,
  });
  onCleanup(() => admin.end());
  await admin.query(telemetryDdl);

  log("starting the gateway (node dist/server/main.js)");
  const gateway = await startGatewayProcess({
    mysqlUrl: db.url,
    poolSize: 4,
    dataDir,
    env: gatewaySettings,
    nodeArgs: gatewayNodeArgs,
  });
  onCleanup(() => gateway.stop());
  const rss: RssSampler = sampleRss(gateway.pid);
  onCleanup(async () => rss.stop());

  const clients = ingestClients(gateway.baseUrl, sessions);
  const lean = createLeanUnaryClient(gateway.baseUrl, sessions);
  const writePath = `/${IngestService.typeName}/${IngestService.method.write.name}`;
  /** Sends one Write as caller `caller`; resolves with rows_written. */
  type Send = (caller: number, request: WriteRequest) => Promise<bigint>;
  const viaConnectNode: Send = async (caller, request) => {
    const client = clients[caller % clients.length];
    if (client === undefined) throw new Error("no client");
    return (await client.write(request)).rowsWritten;
  };
  const viaLean: Send = async (caller, request) => {
    const body = await lean.call(caller, writePath, toBinary(WriteRequestSchema, request));
    return fromBinary(WriteResponseSchema, body).rowsWritten;
  };

  let keySeq = 0;
  const rowValues = (caller: number) => ({
    device: caller,
    ts: datetimeText(Date.now()),
    value: Math.round(Math.random() * 1e6) / 1e3,
    note: "ok",
  });
  const gatewayOp =
    (target: () => Target, send: Send, durability: Durability, keyed: boolean) =>
    async (caller: number) => {
      const v = rowValues(caller);
      const request = create(WriteRequestSchema, {
        table: telemetryTable,
        columns: telemetryColumns as string[],
        rows: [
          {
            values: [
              { kind: { case: "int64Value", value: BigInt(v.device) } },
              { kind: { case: "temporalValue", value: v.ts } },
              { kind: { case: "float64Value", value: v.value } },
              { kind: { case: "stringValue", value: v.note } },
            ],
          },
        ],
        durability,
        idempotencyKey: keyed ? `bench-${process.pid}-${caller}-${keySeq++}` : "",
      });
      try {
        const rowsWritten = await send(caller, request);
        if (rowsWritten !== 1n) throw new Error(`rows_written ${rowsWritten}, expected 1`);
        target().ok++;
      } catch (err) {
        recordError(target().errors, err);
      }
    };

  const all: Target[] = [];
  const add = (t: Omit<Target, "errors" | "ok">) => {
    const target: Target = { ...t, errors: { count: 0, first: [] }, ok: 0 };
    if (variants.includes(t.variant)) all.push(target);
    return target;
  };
  const directTarget: Target = add({
    name: `direct mysql2, pool ${directPoolSize}, autocommit INSERT (${directMethod})`,
    variant: "direct",
    op: async (caller) => {
      const v = rowValues(caller);
      const params = [v.device, v.ts, v.value, v.note];
      try {
        await (directMethod === "query"
          ? direct.query(insertSql, params)
          : direct.execute(insertSql, params));
        directTarget.ok++;
      } catch (err) {
        recordError(directTarget.errors, err);
      }
    },
  });
  const loadClients = [
    { suffix: "", label: "connect-node", send: viaConnectNode },
    { suffix: "-lean", label: "lean h2 client", send: viaLean },
  ];
  for (const { suffix, label, send } of loadClients) {
    const committed: Target = add({
      name: `gateway Write, COMMITTED (${label})`,
      variant: `committed${suffix}`,
      op: gatewayOp(() => committed, send, Durability.COMMITTED, false),
      // A batch of one table without keys is one autocommit INSERT.
      batches: (d) => d.comInsert,
    });
    const keyed: Target = add({
      name: `gateway Write, COMMITTED, idempotency key per call (${label})`,
      variant: `keyed${suffix}`,
      op: gatewayOp(() => keyed, send, Durability.COMMITTED, true),
      // START TRANSACTION, key lookup, key INSERT, row INSERT, COMMIT.
      batches: (d) => d.comCommit,
    });
    const buffered: Target = add({
      name: `gateway Write, BUFFERED, + flush to MySQL (${label})`,
      variant: `buffered${suffix}`,
      op: gatewayOp(() => buffered, send, Durability.BUFFERED, false),
      // The log flusher's transactions (rows + the log's applied mark).
      batches: (d) => d.comCommit,
      buffered: true,
    });
  }
  // h2load sends one fixed single-row Write (device 1) with 1,000 calls in
  // flight over the same 4 HTTP/2 connections: the gateway's capacity with a
  // load generator that costs ~10 us per call instead of ~100-350.
  const fixedRow = toBinary(
    WriteRequestSchema,
    create(WriteRequestSchema, {
      table: telemetryTable,
      columns: telemetryColumns as string[],
      rows: [
        {
          values: [
            { kind: { case: "int64Value", value: 1n } },
            { kind: { case: "temporalValue", value: datetimeText(Date.now()) } },
            { kind: { case: "float64Value", value: 1.5 } },
            { kind: { case: "stringValue", value: "ok" } },
          ],
        },
      ],
    }),
  );
  let h2loadRate = 0;
  const h2loadCommitted: Target = add({
    name: "gateway Write, COMMITTED (h2load)",
    variant: "committed-h2load",
    op: gatewayOp(() => h2loadCommitted, viaLean, Durability.COMMITTED, false),
    drive: async (secs) => {
      // Runs send a fixed number of calls, from the last rate seen, so that
      // every call sent is counted (see H2loadOptions.requests).
      const requests = h2loadRate > 0 ? Math.round(h2loadRate * secs) : undefined;
      const result = await runH2load({
        requests,
        url: `${gateway.baseUrl}${writePath}`,
        body: fixedRow,
        headers: { "content-type": "application/proto" },
        connections: sessions,
        streams: Math.ceil(callers / sessions),
        seconds: secs,
      });
      h2loadCommitted.ok += result.calls;
      h2loadRate = result.rate;
      if (result.failed > 0) {
        recordError(h2loadCommitted.errors, new Error(`h2load: ${result.failed} calls failed`));
      }
      return result;
    },
    batches: (d) => d.comInsert,
  });
  const targets = all;
  if (targets.length === 0) throw new Error(`BENCH_VARIANTS=${variants.join(",")} names none`);

  // One row each way before anything is timed.
  for (const target of targets) await target.op(0);
  for (const target of targets) {
    if (target.errors.count > 0) throw new Error(`${target.name}: ${target.errors.first[0]}`);
  }
  await waitForRows(admin, targets.length);
  log(`sanity check: ${await countRows(admin)} rows written, one per path`);

  // Warm-up in 1 s slices until BENCH_WARMUP_CALLS calls or the cap (V8 tiers
  // code up by how often it runs; see point-query.ts).
  for (const target of targets) {
    const rates: number[] = [];
    let calls = 0;
    const until = performance.now() + warmupSeconds * 1000;
    while (calls < warmupCalls && performance.now() < until) {
      const result = await (target.drive?.(1) ?? runLoad(target.op, callers, 1));
      calls += result.calls;
      rates.push(Math.round(result.rate));
    }
    log(`warmed up ${target.name} with ${calls} calls: ${rates.join(", ")} calls/s`);
    if (target.errors.count > 0) {
      throw new Error(`${target.name}: ${target.errors.count} errors in the warm-up`);
    }
  }
  await drainAndTruncate(admin, targets);

  const samples = new Map<Target, Sample[]>(targets.map((t) => [t, []]));
  for (let run = 1; run <= runs; run++) {
    for (const target of targets) {
      target.ok = 0;
      const counters = await statusCounters(admin);
      const cpuBefore = cpuSnapshot(gateway.pid, db.pid);
      rss.phase(target.name);
      const result = await (target.drive?.(seconds) ?? runLoad(target.op, callers, seconds));
      const acked = target.ok;
      const drainSeconds = target.buffered ? await waitForRows(admin, acked) : 0;
      const cpuAfter = cpuSnapshot(gateway.pid, db.pid);
      rss.phase("between");
      const delta = countersSince(counters, await statusCounters(admin));
      const inTable = await countRows(admin);
      const countMismatch =
        inTable === acked ? undefined : `${acked} acknowledged, ${inTable} in the table`;
      if (countMismatch !== undefined) log(`${target.name}: COUNT(*) mismatch: ${countMismatch}`);
      const sample: Sample = {
        rate: acked / result.seconds,
        rows: acked,
        seconds: result.seconds,
        p50: percentile(result.latenciesMs, 50),
        p99: percentile(result.latenciesMs, 99),
        cpu: cpuUse(cpuBefore, cpuAfter, acked),
        batches: target.batches?.(delta) ?? Number.NaN,
        drainSeconds,
        countMismatch,
      };
      samples.get(target)?.push(sample);
      log(
        `${target.name}, run ${run}/${runs}: ${fmt.rate(sample.rate)} rows/s, ` +
          `p50 ${fmt.ms(sample.p50)} ms, p99 ${fmt.ms(sample.p99)} ms` +
          (target.batches === undefined
            ? ""
            : `, ${sample.batches} batches (${fmt.rate(acked / sample.batches)} rows each)`) +
          (target.buffered ? `, drained in ${sample.drainSeconds.toFixed(2)} s` : "") +
          `; CPU % client/gateway/MariaDB ${fmt.pct(sample.cpu.percent.client)}/` +
          `${fmt.pct(sample.cpu.percent.gateway)}/${fmt.pct(sample.cpu.percent.mysql)}, ` +
          `other processes ${fmt.pct(sample.cpu.otherPercent)}` +
          ` (Com_insert ${delta.comInsert}, Com_commit ${delta.comCommit}, Handler_commit ${delta.handlerCommit})`,
      );
      await drainAndTruncate(admin, [target]);
    }
  }

  rss.stop();
  writeReport("ingest-write.md", report(samples, directTarget, serverVersion, rss));
  const directSamples = samples.get(directTarget) ?? [];
  writeFigures(
    "ingest-write.json",
    [...samples].flatMap(([target, list]): Figure[] => {
      if (target === directTarget) return [];
      const name = target.name.replace(/^gateway Write, /, "");
      const goals = target.variant === "committed-h2load";
      return [
        {
          benchmark: "Single-row Write, 1,000 callers",
          name: `${name}: rows/s ratio to direct`,
          unit: "x",
          ...spread(list.map((s, i) => s.rate / (directSamples[i]?.rate ?? Number.NaN))),
          ...(goals ? { goal: { op: ">=", value: goalRatio } } : {}),
        },
        {
          benchmark: "Single-row Write, 1,000 callers",
          name: `${name}: rows/s`,
          unit: "rows/s",
          ...spread(list.map((s) => s.rate)),
          ...(goals ? { goal: { op: ">=", value: goalRate } } : {}),
        },
      ];
    }),
  );
}

/** Empties the table between runs, once BUFFERED rows have all reached it. */
async function drainAndTruncate(admin: mysql.Pool, targets: readonly Target[]): Promise<void> {
  if (targets.some((t) => t.buffered)) {
    // The flusher may still hold rows: wait until the table stops growing.
    let last = -1;
    for (let n = await countRows(admin); n !== last; n = await countRows(admin)) {
      last = n;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
  await admin.query(`TRUNCATE TABLE ${telemetryTable}`);
}

function report(
  samples: Map<Target, Sample[]>,
  directTarget: Target,
  serverVersion: string,
  rss: RssSampler,
): string {
  const directSamples = samples.get(directTarget) ?? [];
  const med = (list: readonly Sample[], pick: (s: Sample) => number) => median(list.map(pick));
  const lines = [
    `## Ingest: single-row Write from ${callers.toLocaleString("en-US")} callers, ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}. Table \`${telemetryDdl}\`, truncated before each run. ` +
      `${callers} concurrent callers, one row per call, each caller a device; gateway calls over ` +
      `connect-node (Connect, binary, h2c) spread round robin over ${sessions} HTTP/2 sessions ` +
      `(${sessions} TCP connections); the gateway a separate process (compiled JS) with ` +
      `${describeSettings(gatewaySettings)} (other settings default). Direct: mysql2 pool of ` +
      `${directPoolSize}, \`pool.execute\` (prepared) single-row autocommit INSERT, the callers ` +
      "queueing for its connections. " +
      `Warm-up ${warmupCalls} calls (at most ${warmupSeconds} s) per path, then ${runs} run(s) of ` +
      `${seconds} s per path, paths alternating; medians of the runs, min-max across them. ` +
      "Rows/s count acknowledged calls; every run checks COUNT(*) against them.",
    "",
    "| path | rows/s | min-max | ratio to direct | p50 ms | p99 ms | batches/s | rows/batch | " +
      "client CPU us/row | gateway CPU us/row | MariaDB CPU us/row | CPU % client/gateway/MariaDB/other | " +
      "gateway max RSS MB | errors |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
  ];
  const ratiosOf = (list: readonly Sample[]) =>
    list.map((s, i) => s.rate / (directSamples[i]?.rate ?? Number.NaN));
  for (const [target, list] of samples) {
    const rates = list.map((s) => s.rate);
    const isDirect = target === directTarget;
    const ratios = ratiosOf(list);
    const batchesPerSecond = list.map((s) => s.batches / (s.seconds + s.drainSeconds));
    const rowsPerBatch = list.map((s) => s.rows / s.batches);
    lines.push(
      `| ${target.name} | ${fmt.rate(median(rates))} | ` +
        `${fmt.rate(Math.min(...rates))}-${fmt.rate(Math.max(...rates))} | ` +
        `${isDirect ? "1" : fmt.ratio(median(ratios))} | ` +
        `${fmt.ms(med(list, (s) => s.p50))} | ${fmt.ms(med(list, (s) => s.p99))} | ` +
        `${isDirect ? "-" : fmt.rate(median(batchesPerSecond))} | ` +
        `${isDirect ? "1" : fmt.rate(median(rowsPerBatch))} | ` +
        `${fmt.us(med(list, (s) => s.cpu.perUnitUs.client))} | ` +
        `${isDirect ? "-" : fmt.us(med(list, (s) => s.cpu.perUnitUs.gateway))} | ` +
        `${fmt.us(med(list, (s) => s.cpu.perUnitUs.mysql))} | ` +
        `${fmt.pct(med(list, (s) => s.cpu.percent.client))}/` +
        `${isDirect ? "-" : fmt.pct(med(list, (s) => s.cpu.percent.gateway))}/` +
        `${fmt.pct(med(list, (s) => s.cpu.percent.mysql))}/` +
        `${fmt.pct(med(list, (s) => s.cpu.otherPercent))} | ` +
        `${isDirect ? "-" : (rss.max(target.name) / 2 ** 20).toFixed(0)} | ` +
        `${target.errors.count} |`,
    );
  }
  lines.push(
    "",
    `| gateway path | goal >= ${goalRatio}x direct (median of per-run ratios, range) | goal >= ${fmt.rate(goalRate)} rows/s |`,
    "|---|---|---|",
  );
  for (const [target, list] of samples) {
    if (target === directTarget || directSamples.length === 0) continue;
    const ratios = ratiosOf(list);
    const ratio = median(ratios);
    const rate = median(list.map((s) => s.rate));
    lines.push(
      `| ${target.name} | ${ratio >= goalRatio ? "met" : "not met"}: ${fmt.ratio(ratio)} ` +
        `(${fmt.ratio(Math.min(...ratios))}-${fmt.ratio(Math.max(...ratios))}) | ` +
        `${rate >= goalRate ? "met" : "not met"}: ${fmt.rate(rate)} |`,
    );
  }
  const bufferedList = [...samples].find(([t]) => t.buffered)?.[1];
  const notes = [
    "",
    "Batches: MariaDB's Com_insert delta for COMMITTED without keys (a batch is one autocommit " +
      "INSERT), Com_commit for the others (one transaction per batch). CPU: each process's " +
      "utime+stime from /proc over the run (client = this load generator, which shares the " +
      "machine's cores with the gateway and MariaDB; other = the rest of the machine, from " +
      "/proc/stat: anything above a few % means another workload disturbed the run). " +
      "Gateway RSS: VmRSS sampled every 100 ms, highest over the path's runs. " +
      "Lean h2 client: Connect's binary unary protocol written directly on node:http2 (see " +
      "bench/support/lean-h2-client.ts), to tell the gateway's cost from connect-node's own.",
  ];
  if (bufferedList !== undefined) {
    notes.push(
      "",
      "BUFFERED rows/s count acknowledgements (fsync'd to the write-ahead log); the run then " +
        "waited until every acknowledged row was in MySQL (median " +
        `${med(bufferedList, (s) => s.drainSeconds).toFixed(2)} s after the run), and its CPU ` +
        "and batch figures include that flushing.",
    );
  }
  const mismatches = [...samples].flatMap(([t, list]) =>
    list.flatMap((s, i) => (s.countMismatch ? [`${t.name} run ${i + 1}: ${s.countMismatch}`] : [])),
  );
  const errors = [...samples].flatMap(([t]) =>
    t.errors.count > 0 ? [`${t.name}: ${t.errors.count} (first: ${t.errors.first[0]})`] : [],
  );
  if (mismatches.length > 0) notes.push("", `COUNT(*) mismatches: ${mismatches.join("; ")}.`);
  const disturbed = [...samples].flatMap(([t, list]) =>
    list.flatMap((s, i) =>
      s.cpu.otherPercent > disturbedPercent
        ? [`${t.name} run ${i + 1} (${fmt.pct(s.cpu.otherPercent)}%)`]
        : [],
    ),
  );
  if (disturbed.length > 0) {
    notes.push(
      "",
      `Runs disturbed by other processes (> ${disturbedPercent}% of a core): ${disturbed.join("; ")}.`,
    );
  }
  if (errors.length > 0) notes.push("", `Failed calls: ${errors.join("; ")}.`);
  notes.push("");
  return [...lines, ...notes].join("\n");
}

await runBenchmark(main);
