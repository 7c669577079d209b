/**
 * BUFFERED ingest on a shared NATS JetStream log: `IngestService.Write`
 * calls of several rows each from many concurrent callers, acknowledged
 * COMMITTED (after MySQL's COMMIT), BUFFERED on the gateway's local
 * write-ahead log, BUFFERED on JetStream with one nats-server, and BUFFERED
 * on JetStream with a three-server cluster and stream replicas 3, in one run
 * on one private MariaDB, the variants alternating. Each variant is a gateway
 * process of its own (compiled JS), all on the same MariaDB; the JetStream
 * ones each on their own nats-server(s), started from generated config files
 * by test/support/nats.ts (as the tests start them).
 *
 * A BUFFERED acknowledgement says the rows are in the log; they reach MySQL
 * later. So a rate of acknowledgements alone can hide a log that grows
 * without bound. Every run therefore also counts the rows in MySQL the moment
 * the last call returned, and the time until every acknowledged row was
 * there: whether the drain keeps up is part of the result.
 *
 * On a small machine the load generator, the gateway, the nats-server(s) and
 * MariaDB share the same cores: each run takes every process's CPU time from
 * /proc, and the report gives CPU per row by process, each one's share of a
 * core during the load, and what limits each variant. The load comes from
 * the lean h2 client (support/lean-h2-client.ts), each request body encoded
 * beforehand, to keep the generator's own share small.
 *
 *   BENCH_ONLY=ingest-jetstream npm run bench
 *   BENCH_ONLY=ingest-jetstream BENCH_SECONDS=2 BENCH_RUNS=1 npm run bench
 *
 * Settings (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CALLERS
 * (200), BENCH_ROWS_PER_CALL (10), BENCH_SESSIONS (4: HTTP/2 connections to
 * each gateway), BENCH_WARMUP_CALLS (10000 per variant), BENCH_WARMUP_SECONDS
 * (20, each warm-up's cap), BENCH_DRAIN_TIMEOUT_SECONDS (120: how long a
 * BUFFERED run may take to reach MySQL), BENCH_VARIANTS (all: a comma list of
 * committed, local, nats-1, nats-3), and any SQLGATE_INGEST_* or SQLGATE_NATS_*
 * (passed to every gateway; SQLGATE_INGEST_LOG and SQLGATE_NATS_REPLICAS are
 * the variants' own). Needs nats-server (scripts/ensure-nats.sh). Prints a
 * markdown report and writes it to bench/out/ingest-jetstream.md.
 */
import { mkdirSync } from "node:fs";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import mysql, { type RowDataPacket } from "mysql2/promise";
import {
  Durability,
  IngestService,
  WriteRequestSchema,
  WriteResponseSchema,
} from "../gen/sqlgate/v1/ingest_pb.js";
import { RowSchema } from "../gen/sqlgate/v1/value_pb.js";
import { type NatsNode, startNats } from "../test/support/nats.js";
import { type GatewayProcess, startGatewayProcess } from "./support/gateway-process.js";
import {
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  startBenchDatabase,
  writeReport,
} from "./support/harness.js";
import {
  countersSince,
  countRows,
  datetimeText,
  describeSettings,
  disturbedPercent,
  type ErrorTally,
  fmt,
  ingestSettings,
  recordError,
  statusCounters,
  telemetryColumns,
  telemetryDdl,
  telemetryTable,
} from "./support/ingest.js";
import { createLeanUnaryClient, type LeanUnaryClient } from "./support/lean-h2-client.js";
import { median, percentile, runLoad } from "./support/load.js";
import { machineBusyMicros, ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const callers = Math.round(setting("BENCH_CALLERS", 200));
const rowsPerCall = Math.round(setting("BENCH_ROWS_PER_CALL", 10));
const sessions = Math.round(setting("BENCH_SESSIONS", 4));
const warmupCalls = Math.round(setting("BENCH_WARMUP_CALLS", 10_000, 0));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 20, 0);
const drainTimeoutMs = 1000 * setting("BENCH_DRAIN_TIMEOUT_SECONDS", 120);
const chosenVariants = (process.env.BENCH_VARIANTS || "committed,local,nats-1,nats-3").split(",");
const cores = os.cpus().length;
const writePath = `/${IngestService.typeName}/${IngestService.method.write.name}`;
/**
 * Messages a JetStream drain takes per fetch, hence per MySQL transaction
 * (`jetStreamFetch` in server/ingest/ingest.ts); a Write call is one message.
 */
const jetStreamFetchMessages = 256;

/**
 * The same ingest settings as bench/ingest-write.ts, so the figures compare.
 * SQLGATE_INGEST_LOG is left out: it is what the variants differ in.
 */
const gatewaySettings = (() => {
  const { SQLGATE_INGEST_LOG: _, ...rest } = ingestSettings({
    SQLGATE_INGEST_CONNECTIONS: "4",
    SQLGATE_INGEST_MAX_DELAY_MS: "2",
    SQLGATE_INGEST_MAX_BATCH_ROWS: "10000",
  });
  return rest;
})();

/** The processes whose CPU is measured, in the report's column order. */
const processes = ["client", "gateway", "nats", "mysql"] as const;
type Proc = (typeof processes)[number];
const processLabels: Record<Proc, string> = {
  client: "load generator",
  gateway: "gateway",
  nats: "nats-server(s)",
  mysql: "MariaDB",
};

/** One way to acknowledge a Write: a column of the report, and a gateway process of its own. */
interface VariantSpec {
  readonly id: string;
  readonly name: string;
  readonly durability: Durability;
  /** 0: no JetStream (SQLGATE_INGEST_LOG=local); 1 or 3: its nats-servers, replicas = servers. */
  readonly natsServers: 0 | 1 | 3;
}

const specs: readonly VariantSpec[] = [
  { id: "committed", name: "COMMITTED", durability: Durability.COMMITTED, natsServers: 0 },
  { id: "local", name: "BUFFERED, local log", durability: Durability.BUFFERED, natsServers: 0 },
  {
    id: "nats-1",
    name: "BUFFERED, JetStream, 1 server",
    durability: Durability.BUFFERED,
    natsServers: 1,
  },
  {
    id: "nats-3",
    name: "BUFFERED, JetStream, 3 servers, replicas 3",
    durability: Durability.BUFFERED,
    natsServers: 3,
  },
];

interface Variant extends VariantSpec {
  readonly gateway: GatewayProcess;
  readonly client: LeanUnaryClient;
  /** Its nats-server processes (none for COMMITTED and the local log). */
  readonly natsNodes: readonly NatsNode[];
  /** Request bodies encoded beforehand, used in turn. */
  readonly bodies: readonly Uint8Array[];
  readonly errors: ErrorTally;
  /** Calls sent, to pick the next body. */
  sent: number;
  /** Calls acknowledged since the table was last emptied. */
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
  /** Rows in MySQL the moment the last call returned. */
  readonly landed: number;
  /** Seconds after that until every acknowledged row was in MySQL (0 for COMMITTED). */
  readonly drainSeconds: number;
  /**
   * BUFFERED: how fast the backlog (acknowledged rows not yet in MySQL) grew
   * during the run, rows/s: about 0 when the drain keeps up (the backlog
   * stays a steady lag), the shortfall of the drain when it does not.
   */
  readonly backlogGrowth: number;
  /** CPU per acknowledged row over the load and the drain, us. */
  readonly perRowUs: Record<Proc, number>;
  readonly otherPerRowUs: number;
  /** CPU during the load, % of one core. */
  readonly percent: Record<Proc, number>;
  readonly otherPercent: number;
  /** The whole machine's busy share during the load, % of one core (at most cores x 100). */
  readonly machinePercent: number;
  /** MySQL transactions that carried the rows (the gateway's batches). */
  readonly batches: number;
  /**
   * JetStream: batches the gateway got a second time (its
   * sqlgate_ingest_log_redelivered_total), over the run and its drain; NaN
   * for the others. A redelivery comes after the consumer's ack wait.
   */
  readonly redelivered: number;
  readonly countMismatch: string | undefined;
}

/** CPU microseconds used so far by each measured process and by the whole machine. */
interface CpuSnapshot {
  readonly used: Record<Proc, number>;
  readonly machine: number;
  readonly atMs: number;
}

function cpuSnapshot(variant: Variant, mysqlPid: number): CpuSnapshot {
  return {
    used: {
      client: ownCpuMicros(),
      gateway: processCpuMicros(variant.gateway.pid),
      nats: variant.natsNodes.reduce((sum, node) => sum + processCpuMicros(node.pid), 0),
      mysql: processCpuMicros(mysqlPid),
    },
    machine: machineBusyMicros(),
    atMs: performance.now(),
  };
}

/** Per-process CPU between two snapshots, and the rest of the machine's. */
function cpuBetween(before: CpuSnapshot, after: CpuSnapshot) {
  const used = {} as Record<Proc, number>;
  for (const p of processes) used[p] = after.used[p] - before.used[p];
  const ours = processes.reduce((sum, p) => sum + used[p], 0);
  const machine = after.machine - before.machine;
  return {
    used,
    other: Math.max(0, machine - ours),
    machine,
    wallUs: (after.atMs - before.atMs) * 1000,
  };
}

/**
 * `count` WriteRequests of `rowsPerCall` rows each, encoded: distinct devices
 * and values, so the rows look like a fleet's readings, without the cost of
 * building and encoding a message per call in the load generator. No
 * idempotency key: the gateway makes one up per BUFFERED batch (the
 * JetStream message id, and the key the drain records in MySQL).
 */
function encodeBodies(durability: Durability, count: number): Uint8Array[] {
  const startMs = Date.now();
  return Array.from({ length: count }, (_, call) =>
    toBinary(
      WriteRequestSchema,
      create(WriteRequestSchema, {
        table: telemetryTable,
        columns: telemetryColumns as string[],
        rows: Array.from({ length: rowsPerCall }, (_, i) =>
          create(RowSchema, {
            values: [
              { kind: { case: "int64Value", value: BigInt(call * rowsPerCall + i) } },
              { kind: { case: "temporalValue", value: datetimeText(startMs + call) } },
              { kind: { case: "float64Value", value: Math.round(Math.random() * 1e6) / 1e3 } },
              { kind: { case: "stringValue", value: "ok" } },
            ],
          }),
        ),
        durability,
        idempotencyKey: "",
      }),
    ),
  );
}

/** One Write as caller `caller`; counts the acknowledgement or the failure. */
async function writeOnce(variant: Variant, caller: number): Promise<void> {
  const body = variant.bodies[variant.sent++ % variant.bodies.length] as Uint8Array;
  try {
    const response = fromBinary(
      WriteResponseSchema,
      await variant.client.call(caller, writePath, body),
    );
    if (response.rowsWritten !== BigInt(rowsPerCall)) {
      throw new Error(`rows_written ${response.rowsWritten}, expected ${rowsPerCall}`);
    }
    variant.ok++;
  } catch (err) {
    recordError(variant.errors, err);
  }
}

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const admin = mysql.createPool({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
    connectionLimit: 1,
  });
  onCleanup(() => admin.end());
  await admin.query(telemetryDdl);

  // startNats takes a test's `after`: here its servers and directories go at cleanup,
  // after the gateways that use them (cleanups run last-in first-out).
  const scope = { after: (fn: () => unknown) => onCleanup(async () => void (await fn())) };
  const variants: Variant[] = [];
  for (const spec of specs.filter((s) => chosenVariants.includes(s.id))) {
    let natsNodes: readonly NatsNode[] = [];
    const logEnv: Record<string, string> = { SQLGATE_INGEST_LOG: "local" };
    if (spec.natsServers > 0) {
      log(`starting ${spec.natsServers} nats-server(s) for ${spec.name}`);
      const nats = await startNats(scope, { servers: spec.natsServers as 1 | 3 });
      natsNodes = nats.nodes;
      logEnv.SQLGATE_INGEST_LOG = nats.serversOption;
      logEnv.SQLGATE_NATS_REPLICAS = String(spec.natsServers);
    }
    log(`starting the gateway for ${spec.name} (node dist/server/main.js)`);
    // A data directory each: a local log is one gateway's (it locks its directory).
    const gatewayDir = path.join(dataDir, `gateway-${spec.id}`);
    mkdirSync(gatewayDir);
    const gateway = await startGatewayProcess({
      mysqlUrl: db.url,
      poolSize: 4,
      dataDir: gatewayDir,
      env: { ...gatewaySettings, ...logEnv },
    });
    onCleanup(() => gateway.stop());
    variants.push({
      ...spec,
      gateway,
      client: createLeanUnaryClient(gateway.baseUrl, sessions),
      natsNodes,
      bodies: encodeBodies(spec.durability, 256),
      errors: { count: 0, first: [] },
      sent: 0,
      ok: 0,
    });
  }
  if (variants.length === 0)
    throw new Error(`BENCH_VARIANTS=${chosenVariants.join(",")} names none`);

  // One call each way before anything is timed.
  for (const variant of variants) {
    await writeOnce(variant, 0);
    if (variant.errors.count > 0) throw new Error(`${variant.name}: ${variant.errors.first[0]}`);
  }
  await drainAndTruncate(admin, variants);
  log(
    `sanity check: ${variants.length * rowsPerCall} rows written and drained, ${rowsPerCall} per variant`,
  );

  // Warm-up in 1 s slices until BENCH_WARMUP_CALLS calls or the cap (V8 tiers
  // code up by how often it runs; see point-query.ts).
  for (const variant of variants) {
    const rates: number[] = [];
    let calls = 0;
    const until = performance.now() + warmupSeconds * 1000;
    while (calls < warmupCalls && performance.now() < until) {
      const result = await runLoad((caller) => writeOnce(variant, caller), callers, 1);
      calls += result.calls;
      rates.push(Math.round(result.rate * rowsPerCall));
    }
    log(`warmed up ${variant.name} with ${calls} calls: ${rates.join(", ")} rows/s`);
    if (variant.errors.count > 0) {
      throw new Error(`${variant.name}: ${variant.errors.count} errors in the warm-up`);
    }
    await drainAndTruncate(admin, [variant]);
  }

  const samples = new Map<Variant, Sample[]>(variants.map((v) => [v, []]));
  for (let run = 1; run <= runs; run++) {
    for (const variant of variants) {
      const sample = await measure(variant, admin, db.pid);
      samples.get(variant)?.push(sample);
      log(
        `${variant.name}, run ${run}/${runs}: ${fmt.rate(sample.rate)} rows/s, ` +
          `p50 ${fmt.ms(sample.p50)} ms, p99 ${fmt.ms(sample.p99)} ms, ` +
          `${sample.landed} of ${sample.rows} rows in MySQL at the end` +
          (variant.durability === Durability.BUFFERED
            ? `, backlog growth ${fmt.rate(sample.backlogGrowth)} rows/s, ` +
              `the rest in ${sample.drainSeconds.toFixed(2)} s`
            : "") +
          `, ${sample.batches} MySQL transactions; CPU % ` +
          processes.map((p) => `${p} ${fmt.pct(sample.percent[p])}`).join(", ") +
          `, other ${fmt.pct(sample.otherPercent)}`,
      );
      await drainAndTruncate(admin, [variant]);
    }
  }

  writeReport("ingest-jetstream.md", report(samples, serverVersion));
}

/**
 * One timed run of `variant`: the load, then (BUFFERED) the wait until every
 * acknowledged row is in MySQL. CPU shares are of the load alone (what was
 * busy while calls were acknowledged); CPU per row spans the load and the
 * drain (all the work of landing the rows).
 */
async function measure(variant: Variant, admin: mysql.Pool, mysqlPid: number): Promise<Sample> {
  variant.ok = 0;
  const redeliveredBefore = await redeliveredOf(variant);
  const counters = await statusCounters(admin);
  const start = cpuSnapshot(variant, mysqlPid);
  const backlog =
    variant.durability === Durability.BUFFERED ? sampleBacklog(admin, variant) : undefined;
  const result = await runLoad((caller) => writeOnce(variant, caller), callers, seconds);
  const loaded = cpuSnapshot(variant, mysqlPid);
  const backlogPoints = (await backlog?.stop()) ?? [];
  const rows = variant.ok * rowsPerCall;
  const landed = await countRows(admin);
  const drainSeconds = landed >= rows ? 0 : await waitForLanded(admin, rows);
  const drained = cpuSnapshot(variant, mysqlPid);
  const delta = countersSince(counters, await statusCounters(admin));
  const redelivered = (await redeliveredOf(variant)) - redeliveredBefore;
  const inTable = await countRows(admin);
  const countMismatch =
    inTable === rows ? undefined : `${rows} acknowledged, ${inTable} in the table`;
  if (countMismatch !== undefined) log(`${variant.name}: COUNT(*) mismatch: ${countMismatch}`);

  const load = cpuBetween(start, loaded);
  const all = cpuBetween(start, drained);
  const perRowUs = {} as Record<Proc, number>;
  const percent = {} as Record<Proc, number>;
  for (const p of processes) {
    perRowUs[p] = all.used[p] / rows;
    percent[p] = (100 * load.used[p]) / load.wallUs;
  }
  return {
    rate: rows / result.seconds,
    rows,
    seconds: result.seconds,
    p50: percentile(result.latenciesMs, 50),
    p99: percentile(result.latenciesMs, 99),
    landed,
    drainSeconds,
    backlogGrowth: growthOf(backlogPoints),
    perRowUs,
    otherPerRowUs: all.other / rows,
    percent,
    otherPercent: (100 * load.other) / load.wallUs,
    machinePercent: (100 * load.machine) / load.wallUs,
    // COMMITTED without keys: a batch is one autocommit INSERT. BUFFERED: the
    // drain's transactions (rows + the log's applied mark or the batches' keys).
    batches: variant.durability === Durability.COMMITTED ? delta.comInsert : delta.comCommit,
    redelivered,
    countMismatch,
  };
}

/**
 * The JetStream batches `variant`'s gateway got again so far, from its
 * /metrics (over h2c, as the calls; the gateway takes no HTTP/1.1 on a
 * cleartext port); NaN without JetStream.
 */
async function redeliveredOf(variant: Variant): Promise<number> {
  if (variant.natsNodes.length === 0) return Number.NaN;
  const session = http2.connect(variant.gateway.baseUrl);
  try {
    const text = await new Promise<string>((resolve, reject) => {
      const stream = session.request({ ":path": "/metrics" });
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
      stream.on("error", reject);
      stream.end();
    });
    const line = /^sqlgate_ingest_log_redelivered_total (\S+)$/m.exec(text);
    if (line === null) throw new Error("no sqlgate_ingest_log_redelivered_total in /metrics");
    return Number(line[1]);
  } finally {
    session.close();
  }
}

/**
 * The rows in the table, cheaply: MAX(id), one index descent, where COUNT(*)
 * reads the whole table (polled while a run or its drain is timed, a scan
 * would add to MariaDB's CPU per row). The gateway writes multi-row INSERTs,
 * which take consecutive AUTO_INCREMENT values (MariaDB's default
 * innodb_autoinc_lock_mode=1), so after a TRUNCATE MAX(id) is the row count
 * unless a batch rolled back and left a gap.
 */
async function maxId(admin: mysql.Pool): Promise<number> {
  const [result] = await admin.query<RowDataPacket[]>(
    `SELECT COALESCE(MAX(id), 0) AS n FROM ${telemetryTable}`,
  );
  return Number(result[0]?.n);
}

/** Acknowledged rows not yet in MySQL, `atSeconds` into a run. */
interface BacklogPoint {
  readonly atSeconds: number;
  readonly rows: number;
}

/**
 * Samples `variant`'s backlog every 50 ms until `stop`, which returns the
 * samples. Often: the backlog is a sawtooth (a drain transaction takes
 * thousands of rows at once, several times a second), and sparse samples
 * would alias it into a false trend.
 */
function sampleBacklog(admin: mysql.Pool, variant: Variant): { stop(): Promise<BacklogPoint[]> } {
  const points: BacklogPoint[] = [];
  const started = performance.now();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 50));
      // Acknowledged before landed: a row cannot be counted landed but not acknowledged.
      const acked = variant.ok * rowsPerCall;
      const landed = await maxId(admin);
      points.push({ atSeconds: (performance.now() - started) / 1000, rows: acked - landed });
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return points;
    },
  };
}

/**
 * The backlog's growth in rows/s: the least-squares slope of its samples
 * after the first second (or third of the run), which leaves out the start,
 * where the backlog rises from 0 to its steady lag.
 */
function growthOf(points: readonly BacklogPoint[]): number {
  const from = Math.min(1, seconds / 3);
  const used = points.filter((p) => p.atSeconds >= from && p.atSeconds <= seconds);
  if (used.length < 3) return Number.NaN;
  const meanT = used.reduce((sum, p) => sum + p.atSeconds, 0) / used.length;
  const meanR = used.reduce((sum, p) => sum + p.rows, 0) / used.length;
  const covariance = used.reduce((sum, p) => sum + (p.atSeconds - meanT) * (p.rows - meanR), 0);
  const variance = used.reduce((sum, p) => sum + (p.atSeconds - meanT) ** 2, 0);
  return covariance / variance;
}

/**
 * Waits until the table holds at least `rows` rows (MAX(id), then COUNT(*)
 * to confirm); returns the seconds it took.
 */
async function waitForLanded(admin: mysql.Pool, rows: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    if ((await maxId(admin)) >= rows && (await countRows(admin)) >= rows) {
      return (performance.now() - started) / 1000;
    }
    if (performance.now() - started > drainTimeoutMs) {
      throw new Error(
        `${telemetryTable} holds ${await countRows(admin)} rows after ${drainTimeoutMs} ms, ` +
          `expected ${rows} (BENCH_DRAIN_TIMEOUT_SECONDS)`,
      );
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Empties the table once the variants' acknowledged rows are all in it, and
 * it stopped growing (a call that failed late may still land its rows).
 */
async function drainAndTruncate(admin: mysql.Pool, variants: readonly Variant[]): Promise<void> {
  await waitForLanded(
    admin,
    variants.reduce((sum, v) => sum + v.ok * rowsPerCall, 0),
  );
  let last = -1;
  for (let n = await countRows(admin); n !== last; n = await countRows(admin)) {
    last = n;
    await new Promise((r) => setTimeout(r, 300));
  }
  await admin.query(`TRUNCATE TABLE ${telemetryTable}`);
  for (const variant of variants) variant.ok = 0;
}

function report(samples: Map<Variant, Sample[]>, serverVersion: string): string {
  const med = (list: readonly Sample[], pick: (s: Sample) => number) => median(list.map(pick));
  const whole = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-");
  const perRow = (list: readonly Sample[], p: Proc) => med(list, (s) => s.perRowUs[p]);
  const totalPerRow = (list: readonly Sample[]) =>
    processes.reduce((sum, p) => sum + perRow(list, p), 0);
  const ceiling = (us: number) => (cores * 1e6) / us;
  const entries = [...samples.entries()];
  /** A process column that does not apply to a variant (no nats-server) shows "-". */
  const shown = (variant: Variant, p: Proc, n: number, f: (n: number) => string) =>
    p === "nats" && variant.natsNodes.length === 0 ? "-" : f(n);

  const lines = [
    `## BUFFERED ingest: local log vs JetStream (1 server, 3 with replicas 3) vs COMMITTED, ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}; nats-server from Debian (test/support/nats.ts config: ` +
      "file storage, everything on 127.0.0.1). Table " +
      `\`${telemetryDdl}\` (5 columns, the 4 without a default written), truncated before ` +
      `each run. ${callers} concurrent callers, ${rowsPerCall} rows per Write call, no ` +
      `idempotency key, lean h2 client (Connect binary, bodies encoded beforehand) over ` +
      `${sessions} HTTP/2 connections to each variant's own gateway process (compiled JS, ` +
      `${describeSettings(gatewaySettings)}; the JetStream ones with SQLGATE_INGEST_LOG=nats://... ` +
      "and SQLGATE_NATS_REPLICAS = servers, other settings default), all on one MariaDB. " +
      `Warm-up ${warmupCalls} calls (at most ${warmupSeconds} s) per variant, then ${runs} run(s) ` +
      `of ${seconds} s per variant, the variants alternating; medians of the runs. Rows/s count ` +
      "acknowledged rows; latency is per Write call.",
    "",
    "| variant | rows/s | rows/s min-max | p50 ms | p99 ms | in MySQL when the run ended | " +
      "rows/s landed during the run | backlog growth during the run, rows/s | " +
      "drain after the run, s (longest) | JetStream batches redelivered, all runs | " +
      "MySQL transactions/s | rows per transaction | errors |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...entries.map(([variant, list]) => {
      const rates = list.map((s) => s.rate);
      const buffered = variant.durability === Durability.BUFFERED;
      return (
        `| ${variant.name} | ${fmt.rate(median(rates))} | ` +
        `${fmt.rate(Math.min(...rates))}-${fmt.rate(Math.max(...rates))} | ` +
        `${fmt.ms(med(list, (s) => s.p50))} | ${fmt.ms(med(list, (s) => s.p99))} | ` +
        `${whole(med(list, (s) => (100 * s.landed) / s.rows))}% | ` +
        `${fmt.rate(med(list, (s) => s.landed / s.seconds))} | ` +
        `${buffered ? fmt.rate(med(list, (s) => s.backlogGrowth)) : "-"} | ` +
        `${buffered ? `${med(list, (s) => s.drainSeconds).toFixed(2)} (${Math.max(...list.map((s) => s.drainSeconds)).toFixed(2)})` : "-"} | ` +
        `${variant.natsNodes.length > 0 ? list.reduce((sum, s) => sum + s.redelivered, 0) : "-"} | ` +
        `${fmt.rate(med(list, (s) => s.batches / (s.seconds + s.drainSeconds)))} | ` +
        `${fmt.rate(med(list, (s) => s.rows / s.batches))} | ${variant.errors.count} |`
      );
    }),
    "",
    "CPU per acknowledged row, us, over the run and its drain (utime + stime from /proc; " +
      "nats-server(s): all of the variant's servers summed; other: the rest of the machine " +
      "meanwhile, from /proc/stat, including the idle variants' processes). The ceiling is " +
      `${cores} cores / the CPU per row of the processes measured: the rate these cores would ` +
      "allow if nothing else ran; without the load generator: if it had its own machine.",
    "",
    `| variant | ${processes.map((p) => processLabels[p]).join(" | ")} | total measured | other | ceiling rows/s | ceiling without load generator |`,
    `|---|${processes.map(() => "---:").join("|")}|---:|---:|---:|---:|`,
    ...entries.map(([variant, list]) => {
      const total = totalPerRow(list);
      return (
        `| ${variant.name} | ${processes.map((p) => shown(variant, p, perRow(list, p), fmt.us)).join(" | ")} | ` +
        `${fmt.us(total)} | ${fmt.us(med(list, (s) => s.otherPerRowUs))} | ` +
        `${fmt.rate(ceiling(total))} | ${fmt.rate(ceiling(total - perRow(list, "client")))} |`
      );
    }),
    "",
    "CPU during the load (without the drain after it), % of one core:",
    "",
    `| variant | ${processes.map((p) => processLabels[p]).join(" | ")} | other | machine, of ${cores * 100} |`,
    `|---|${processes.map(() => "---:").join("|")}|---:|---:|`,
    ...entries.map(
      ([variant, list]) =>
        `| ${variant.name} | ${processes
          .map((p) =>
            shown(
              variant,
              p,
              med(list, (s) => s.percent[p]),
              whole,
            ),
          )
          .join(" | ")} | ` +
        `${whole(med(list, (s) => s.otherPercent))} | ${whole(med(list, (s) => s.machinePercent))} |`,
    ),
    "",
    "What limits each variant (from the medians above):",
    "",
    ...entries.map(([variant, list]) => `- ${variant.name}: ${limitOf(variant, list)}`),
    "",
    "How the BUFFERED columns are taken: the backlog (acknowledged rows not yet in MySQL) is " +
      "sampled every 50 ms during the run (acknowledgements counted here, rows in MySQL as " +
      "MAX(id)); its growth is the least-squares slope after the first second. About 0 means the " +
      "drain keeps up and the backlog is a steady lag; more means the log grows. The drain time " +
      "is from the last acknowledgement until COUNT(*) reached the acknowledged rows. A " +
      "JetStream drain fetches up to 256 messages at once and a fetch that finds fewer waits " +
      "for more up to its 1 s expiry (server/ingest/log/jetstream-log.ts), so a tail smaller " +
      "than that lands up to about a second late once the load stops; the local log's flusher " +
      "takes what is there.",
    "",
  ];

  const mismatches = entries.flatMap(([v, list]) =>
    list.flatMap((s, i) => (s.countMismatch ? [`${v.name} run ${i + 1}: ${s.countMismatch}`] : [])),
  );
  if (mismatches.length > 0) lines.push(`COUNT(*) mismatches: ${mismatches.join("; ")}.`, "");
  const disturbed = entries.flatMap(([v, list]) =>
    list.flatMap((s, i) =>
      s.otherPercent > disturbedPercent
        ? [`${v.name} run ${i + 1} (${fmt.pct(s.otherPercent)}%)`]
        : [],
    ),
  );
  if (disturbed.length > 0) {
    lines.push(
      `Runs disturbed by other processes (> ${disturbedPercent}% of a core): ${disturbed.join("; ")}.`,
      "",
    );
  }
  const errors = entries.flatMap(([v]) =>
    v.errors.count > 0 ? [`${v.name}: ${v.errors.count} (first: ${v.errors.first[0]})`] : [],
  );
  if (errors.length > 0) lines.push(`Failed calls: ${errors.join("; ")}.`, "");
  return lines.join("\n");

  /**
   * One sentence on the CPU: the machine's cores full (then the rate is cores
   * / CPU per row, and the largest per-row costs are what to cut), or one
   * process at a whole core (a Node process runs its JavaScript on one
   * thread), or neither (then calls wait on something else: fsync, a
   * replication round trip, a hand-off between processes). For BUFFERED, one
   * more on whether the drain to MySQL kept up with the acknowledgements.
   */
  function limitOf(variant: Variant, list: readonly Sample[]): string {
    const machine = med(list, (s) => s.machinePercent);
    const total = totalPerRow(list);
    const largest = processes
      .map((p) => ({ p, us: perRow(list, p) }))
      .filter(({ us }) => us >= 0.15 * total)
      .sort((a, b) => b.us - a.us)
      .map(({ p, us }) => `${processLabels[p]} ${fmt.us(us)} us (${whole((100 * us) / total)}%)`)
      .join(", ");
    const busiest = processes
      .filter((p) => p !== "nats" || variant.natsNodes.length > 0)
      .map((p) => ({ p, percent: med(list, (s) => s.percent[p]) }))
      .sort((a, b) => b.percent - a.percent)[0];
    const state =
      machine >= 90 * cores
        ? `the ${cores} cores are full (${whole(machine)}% of ${cores * 100} busy, other processes ` +
          `${whole(med(list, (s) => s.otherPercent))}% of a core): CPU-bound`
        : busiest !== undefined && busiest.percent >= 90 && busiest.p !== "nats"
          ? `the ${processLabels[busiest.p]} is at a whole core (${whole(busiest.percent)}%) while ` +
            `the machine is ${whole(machine)}% of ${cores * 100} busy: bound by that one process`
          : `no core is full (machine ${whole(machine)}% of ${cores * 100} busy, the busiest ` +
            `process, ${busiest === undefined ? "-" : processLabels[busiest.p]}, at ` +
            `${whole(busiest?.percent ?? Number.NaN)}% of a core): besides CPU, calls wait on ` +
            "hand-offs between the processes sharing the cores (a JetStream publish and its " +
            "replication, an fsync)";
    const rate = med(list, (s) => s.rate);
    const cpu =
      `${state}; ${fmt.us(total)} us of CPU per row (the rate is ` +
      `${whole((100 * rate) / ceiling(total))}% of the ceiling that allows), mostly ${largest}.`;
    if (variant.durability !== Durability.BUFFERED) return cpu;
    const growth = med(list, (s) => s.backlogGrowth);
    const backlog = med(list, (s) => s.rows - s.landed);
    const drain = med(list, (s) => s.drainSeconds);
    const perTransaction = med(list, (s) => s.rows / s.batches);
    const capped =
      variant.natsServers > 0 && perTransaction >= 0.9 * jetStreamFetchMessages * rowsPerCall
        ? ` Its drain transactions were at the fetch cap (${jetStreamFetchMessages} messages, ` +
          `${fmt.rate(jetStreamFetchMessages * rowsPerCall)} rows): the drain's rate is that ` +
          "times the fetch-write-ack cycles per second, which slow down when the gateway's " +
          "thread is busy with calls; the local log's flusher takes up to " +
          "SQLGATE_INGEST_MAX_BATCH_ROWS at once, so its batches grow instead."
        : "";
    const longest = Math.max(...list.map((s) => s.drainSeconds));
    const redelivered = list.reduce((sum, s) => sum + s.redelivered, 0);
    const stuck =
      longest <= Math.max(5, 3 * drain)
        ? ""
        : ` One run's rest took ${longest.toFixed(2)} s` +
          (variant.natsNodes.length > 0
            ? ` (${redelivered} batches redelivered over the runs): a batch delivered to the ` +
              "drain and not acknowledged comes back only after the consumer's ack wait " +
              "(SQLGATE_NATS_ACK_WAIT_MS, 30 s by default); the gateway's warnings (stderr) " +
              "say why it was not."
            : ".");
    const end =
      `${fmt.rate(backlog)} acknowledged rows (${(backlog / rate).toFixed(2)} s of ` +
      `acknowledgements) were not yet in MySQL when the run ended, all there ${drain.toFixed(2)} s later`;
    return growth <= 0.05 * rate
      ? `${cpu} The drain kept up: the backlog stayed level during the run ` +
          `(${fmt.rate(growth)} rows/s); ${end}.${stuck}${capped}`
      : `${cpu} The drain fell behind: the backlog grew by ${fmt.rate(growth)} rows/s during ` +
          `the run (${fmt.rate(rate)} rows/s acknowledged); ${end}. Held longer, the log grows ` +
          "until its cap (SQLGATE_INGEST_LOG_MAX_BYTES, SQLGATE_NATS_MAX_BYTES), and then calls " +
          `wait for the drain.${stuck}${capped}`;
  }
}

await runBenchmark(main);
