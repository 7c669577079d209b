/**
 * Read-replicas benchmark, on a private MariaDB primary and its GTID replica
 * (server/devdb/replicated-mysql.ts), in one run:
 *
 * 1. Throughput of point queries (primary-key lookups) from many concurrent
 *    callers through ONE gateway process configured with the replica, read
 *    with `readFrom` PRIMARY and with `readFrom` REPLICA; a second gateway
 *    with no replica configured and direct mysql2 against the primary are the
 *    baselines. The paths alternate; every run takes each process's CPU time
 *    from /proc (load generator, both gateways, both mariadbd), because on a
 *    small machine they all share the same cores and a rate alone does not
 *    say what limits it. Every answer's `servedBy` is checked, so a read that
 *    fell back to the primary is counted, not hidden in the rate.
 * 2. What `minPosition` costs one caller reading from the replica: without
 *    it; with the position of a write made at the start, which the replica
 *    has long applied and the gateway's per-second check already knows (no
 *    wait, only the comparison); and with a fresh position per read (a write,
 *    then at once a read with its position: the gateway waits on the replica
 *    with MASTER_GTID_WAIT before reading), against a read right after a
 *    write without a position (which may be stale: counted). Only the reads
 *    are timed.
 *
 * The load comes from the lean h2 client (support/lean-h2-client.ts) with the
 * request bodies encoded beforehand, to keep the generator's share small.
 *
 *   BENCH_ONLY=read-replicas npm run bench
 *   BENCH_ONLY=read-replicas BENCH_SECONDS=2 BENCH_RUNS=1 npm run bench
 *
 * Settings (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CALLERS
 * (64, part 1), BENCH_SESSIONS (4 HTTP/2 connections per gateway),
 * BENCH_POOL_SIZE (16: mysql2's pool and each gateway's, per server),
 * BENCH_ROWS (10000), BENCH_WARMUP_CALLS (20000 per path, part 1),
 * BENCH_WARMUP_SECONDS (30, each warm-up's cap; part 2 warms each variant up
 * for 2 s at most), BENCH_SETTLE_MS (2000: the wait after part 2's start
 * write). Prints a markdown report and writes it to bench/out/read-replicas.md.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import mysql from "mysql2/promise";
import {
  DatabaseService,
  type ExecuteOptionsSchema,
  ExecuteRequestSchema,
  type ExecuteResponse,
  ExecuteResponseSchema,
  ReadFrom,
} from "../gen/sqlgate/v1/database_pb.js";
import { type ReplicatedMysql, startReplicatedMysql } from "../server/devdb/replicated-mysql.js";
import { hasReached, parsePosition } from "../server/mysql/replication/position.js";
import { type GatewayProcess, startGatewayProcess } from "./support/gateway-process.js";
import {
  gatewayClient,
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  writeReport,
} from "./support/harness.js";
import { createLeanUnaryClient, type LeanUnaryClient } from "./support/lean-h2-client.js";
import { type LoadResult, median, percentile, runLoad } from "./support/load.js";
import { machineBusyMicros, ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const callers = Math.round(setting("BENCH_CALLERS", 64));
const sessions = Math.round(setting("BENCH_SESSIONS", 4));
const poolSize = Math.round(setting("BENCH_POOL_SIZE", 16));
const rowCount = Math.round(setting("BENCH_ROWS", 10_000));
const warmupCalls = Math.round(setting("BENCH_WARMUP_CALLS", 20_000, 0));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 30, 0);
const sequentialWarmupSeconds = Math.min(2, warmupSeconds);
const settleMs = setting("BENCH_SETTLE_MS", 2000, 0);
const cores = os.cpus().length;
/**
 * The replica settings of the gateway under test, their documented defaults
 * written out so the report states them: checked each second, waited on at
 * most 500 ms for a `minPosition`, unused when more than 5 s behind.
 */
const replicaSettings = {
  SQLGATE_REPLICA_CHECK_INTERVAL_MS: "1000",
  SQLGATE_REPLICA_WAIT_MS: "500",
  SQLGATE_REPLICA_MAX_LAG_MS: "5000",
} as const;
// The same statement and table as bench/point-query.ts, so the figures compare.
const sql = "SELECT id, name, price, created FROM bench_items WHERE id = ?";
const updateSql = "UPDATE bench_items SET name = ? WHERE id = ?";
const executePath = `/${DatabaseService.typeName}/${DatabaseService.method.execute.name}`;
const randomId = () => 1 + Math.floor(Math.random() * rowCount);

/** Which server should answer a path's calls, by `servedBy`. */
type Expected = "primary" | "replica" | "not named";

/** Whether `servedBy` is what `expected` asks for. */
function isServedAsExpected(servedBy: string, expected: Expected): boolean {
  if (expected === "primary") return servedBy === "primary";
  if (expected === "replica") return servedBy.startsWith("replica ");
  // A gateway without replicas leaves served_by empty.
  return servedBy === "";
}

/** A way to run the point query under load: one row of part 1's tables. */
interface Target {
  readonly name: string;
  readonly op: (caller: number) => Promise<void>;
  /** Calls answered by another server than intended (a fallback to the primary). */
  elsewhere: number;
}

/** One process whose CPU time the report shows as a column. */
interface CpuColumn {
  readonly label: string;
  readonly cpuMicros: () => number;
}

interface Sample {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU microseconds per call, one per column. */
  readonly perCallUs: readonly number[];
  /** Percent of one core, one per column. */
  readonly percent: readonly number[];
  /** What other processes on the machine used meanwhile: per call, and % of one core. */
  readonly otherPerCallUs: number;
  readonly otherPercent: number;
  /** The whole machine's busy share, % of one core (at most cores x 100). */
  readonly machinePercent: number;
}

/** Part 2: one way to make a replica read, sequentially. */
interface ReadVariant {
  readonly name: string;
  /** Whether each read follows a write of the row it reads (then a stale read is counted). */
  readonly afterWrite: boolean;
  /** Untimed: what the timed read sends, and the name it must find (when a write made it). */
  readonly prepare: () => Promise<{ body: Uint8Array; expectName?: string }>;
}

/** Part 2's counts for one variant, over its timed runs. */
interface ReadTally {
  reads: number;
  onReplica: number;
  /** Reads that did not see the write just made (only variants that write). */
  stale: number;
  readonly p50s: number[];
  readonly p99s: number[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "sqlgate-bench-"));
  onCleanup(async () => rmSync(dir, { recursive: true, force: true }));
  log(`starting a MariaDB primary and GTID replica in ${dir}`);
  const servers = await startReplicatedMysql({ dir: path.join(dir, "mysql"), log });
  onCleanup(() => servers.stop());
  const { primary, replica } = servers;
  const direct = mysql.createPool({
    socketPath: primary.socketPath,
    user: "root",
    database: primary.database,
    connectionLimit: poolSize,
  });
  onCleanup(() => direct.end());
  await loadRows(direct);
  const serverVersion = await waitForReplica(direct, servers);

  log("starting a gateway with the replica, and one without");
  const withReplica = await startGateway(dir, "with-replica", primary.url, {
    SQLGATE_MYSQL_REPLICA_URLS: replica.url,
    ...replicaSettings,
  });
  const primaryOnly = await startGateway(dir, "primary-only", primary.url, {});
  await waitForUsableReplica(withReplica);
  await sanityCheck(direct, withReplica, primaryOnly);

  // Every request body encoded once, before any timing: the generator's
  // work per call is then only HTTP/2 and decoding the answer.
  const bodiesFor = (options?: Options) =>
    Array.from({ length: rowCount }, (_, i) => pointQuery(i + 1, options));
  const plainBodies = bodiesFor();
  const primaryBodies = bodiesFor({ readFrom: ReadFrom.PRIMARY });
  const replicaBodies = bodiesFor({ readFrom: ReadFrom.REPLICA });
  const replicaLean = createLeanUnaryClient(withReplica.baseUrl, sessions);
  const primaryOnlyLean = createLeanUnaryClient(primaryOnly.baseUrl, sessions);
  const gatewayTarget = (
    name: string,
    lean: LeanUnaryClient,
    bodies: readonly Uint8Array[],
    expected: Expected,
  ): Target => {
    const target: Target = {
      name,
      elsewhere: 0,
      op: async (caller) => {
        const id = randomId();
        const answer = await execute(lean, caller, bodies[id - 1] as Uint8Array);
        if (answer.rows.length !== 1) throw new Error(`id ${id}: ${answer.rows.length} rows`);
        if (!isServedAsExpected(answer.servedBy, expected)) target.elsewhere++;
      },
    };
    return target;
  };
  const directTarget: Target = {
    name: "direct mysql2 -> primary",
    elsewhere: 0,
    op: async () => {
      await direct.execute(sql, [randomId()]);
    },
  };
  const noReplicaTarget = gatewayTarget(
    "gateway without replica",
    primaryOnlyLean,
    plainBodies,
    "not named",
  );
  const primaryTarget = gatewayTarget(
    "gateway with replica, readFrom PRIMARY",
    replicaLean,
    primaryBodies,
    "primary",
  );
  const replicaTarget = gatewayTarget(
    "gateway with replica, readFrom REPLICA",
    replicaLean,
    replicaBodies,
    "replica",
  );
  const targets = [directTarget, noReplicaTarget, primaryTarget, replicaTarget];

  // V8 settles a gateway's code only after ~10,000 calls (bench/point-query.ts):
  // each path warms up in 1 s slices until BENCH_WARMUP_CALLS calls or the cap.
  for (const target of targets) {
    const rates: number[] = [];
    let calls = 0;
    const until = performance.now() + warmupSeconds * 1000;
    while (calls < warmupCalls && performance.now() < until) {
      const result = await runLoad(target.op, callers, 1);
      calls += result.calls;
      rates.push(Math.round(result.rate));
    }
    log(`warmed up ${target.name} with ${calls} calls: ${rates.join(", ")} calls/s`);
  }
  for (const target of targets) target.elsewhere = 0;

  const columns: CpuColumn[] = [
    { label: "load generator", cpuMicros: ownCpuMicros },
    { label: "gateway with replica", cpuMicros: () => processCpuMicros(withReplica.pid) },
    { label: "gateway without replica", cpuMicros: () => processCpuMicros(primaryOnly.pid) },
    { label: "primary mariadbd", cpuMicros: () => processCpuMicros(primary.pid) },
    { label: "replica mariadbd", cpuMicros: () => processCpuMicros(replica.pid) },
  ];
  const samples = new Map<Target, Sample[]>(targets.map((t) => [t, []]));
  for (let run = 1; run <= runs; run++) {
    for (const target of targets) {
      const sample = await measure(target, columns);
      samples.get(target)?.push(sample);
      log(
        `${target.name}, run ${run}/${runs}: ${Math.round(sample.rate)} calls/s, ` +
          `p50 ${sample.p50.toFixed(3)} ms, p99 ${sample.p99.toFixed(3)} ms, ` +
          `machine ${Math.round(sample.machinePercent)}% of ${cores * 100}%`,
      );
    }
  }

  const sequential = await measureMinPosition(replicaLean, replicaBodies, withReplica);

  writeReport(
    "read-replicas.md",
    [
      ...throughputReport({
        samples,
        columns,
        serverVersion,
        ratios: [
          { name: "gateway without replica / mysql2", of: noReplicaTarget, to: directTarget },
          { name: "readFrom PRIMARY / mysql2", of: primaryTarget, to: directTarget },
          { name: "readFrom REPLICA / mysql2", of: replicaTarget, to: directTarget },
          {
            name: "readFrom PRIMARY / gateway without replica",
            of: primaryTarget,
            to: noReplicaTarget,
          },
          { name: "readFrom REPLICA / readFrom PRIMARY", of: replicaTarget, to: primaryTarget },
        ],
        readFrom: { primary: primaryTarget, replica: replicaTarget },
      }),
      ...minPositionReport(sequential),
    ].join("\n"),
  );
}

/** A gateway process over the primary, its data in `<dir>/<name>`. */
async function startGateway(
  dir: string,
  name: string,
  mysqlUrl: string,
  env: Readonly<Record<string, string>>,
): Promise<GatewayProcess> {
  const dataDir = path.join(dir, name);
  mkdirSync(dataDir);
  const gateway = await startGatewayProcess({ mysqlUrl, poolSize, dataDir, env });
  onCleanup(() => gateway.stop());
  return gateway;
}

type Options = MessageInitShape<typeof ExecuteOptionsSchema>;

/** A point query's request body, encoded. */
function pointQuery(id: number, options?: Options): Uint8Array {
  const request = create(ExecuteRequestSchema, {
    sql,
    typedParams: [{ kind: { case: "int64Value", value: BigInt(id) } }],
    ...(options === undefined ? {} : { options }),
  });
  return toBinary(ExecuteRequestSchema, request);
}

/** One Execute call through the lean client, decoded. */
async function execute(
  lean: LeanUnaryClient,
  session: number,
  body: Uint8Array,
): Promise<ExecuteResponse> {
  return fromBinary(ExecuteResponseSchema, await lean.call(session, executePath, body));
}

/** The point-query table of bench/point-query.ts: `rowCount` rows, 1,000 per INSERT. */
async function loadRows(pool: mysql.Pool): Promise<void> {
  log(`loading ${rowCount} rows into bench_items on the primary`);
  await pool.query(
    "CREATE TABLE bench_items (id BIGINT PRIMARY KEY, name VARCHAR(64), price DECIMAL(10,2), created DATETIME(6))",
  );
  for (let first = 1; first <= rowCount; first += 1000) {
    const rows = [];
    for (let id = first; id < Math.min(first + 1000, rowCount + 1); id++) {
      const created = new Date(Date.UTC(2024, 0, 1) + id * 61_001).toISOString();
      rows.push([
        id,
        `item ${id}`,
        ((id * 7919) % 100_000) / 100,
        created.replace("T", " ").slice(0, 23),
      ]);
    }
    await pool.query("INSERT INTO bench_items (id, name, price, created) VALUES ?", [rows]);
  }
}

/**
 * Waits until the replica has applied everything the primary has written
 * (MASTER_GTID_WAIT on the primary's `@@gtid_binlog_pos`) and checks it holds
 * every row. Returns the servers' version.
 */
async function waitForReplica(direct: mysql.Pool, servers: ReplicatedMysql): Promise<string> {
  const [[head]] = await direct.query<mysql.RowDataPacket[]>(
    "SELECT @@gtid_binlog_pos AS position, VERSION() AS version",
  );
  const conn = await mysql.createConnection({
    socketPath: servers.replica.socketPath,
    user: "root",
    database: servers.replica.database,
  });
  try {
    const [[wait]] = await conn.query<mysql.RowDataPacket[]>(
      "SELECT MASTER_GTID_WAIT(?, 30) AS result",
      [head?.position],
    );
    const [[count]] = await conn.query<mysql.RowDataPacket[]>(
      "SELECT COUNT(*) AS n FROM bench_items",
    );
    if (Number(wait?.result) !== 0 || Number(count?.n) !== rowCount) {
      throw new Error(`the replica did not get the rows: wait ${wait?.result}, ${count?.n} rows`);
    }
    log(`the replica has all ${rowCount} rows (primary at ${head?.position})`);
  } finally {
    await conn.end();
  }
  return String(head?.version);
}

/** The gateway's view of its replica, from `/readyz`. */
async function replicaStatus(
  gateway: GatewayProcess,
): Promise<{ usable: boolean; position: string } | undefined> {
  const body = (await (await fetch(`${gateway.baseUrl}/readyz`)).json()) as {
    replicas?: { usable: boolean; position: string }[];
  };
  return body.replicas?.[0];
}

/** Polls `/readyz` until `accept` holds of the replica's status (10 s at most). */
async function waitForReplicaStatus(
  gateway: GatewayProcess,
  what: string,
  accept: (status: { usable: boolean; position: string }) => boolean,
): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    const status = await replicaStatus(gateway);
    if (status !== undefined && accept(status)) return;
    if (Date.now() > until) throw new Error(`${what} within 10 s: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The gateway checks its replica at start and every second: until then reads go to the primary. */
function waitForUsableReplica(gateway: GatewayProcess): Promise<void> {
  return waitForReplicaStatus(gateway, "the replica usable", (status) => status.usable);
}

/**
 * Before anything is timed: every path returns the same row from the server
 * it should (`servedBy`, and `@@server_id`: 1 on the primary, 2 on the
 * replica).
 */
async function sanityCheck(
  direct: mysql.Pool,
  withReplica: GatewayProcess,
  primaryOnly: GatewayProcess,
): Promise<void> {
  const [check] = await direct.execute<mysql.RowDataPacket[]>(sql, [42]);
  if (check[0]?.name !== "item 42") throw new Error(`direct mysql2: ${String(check[0]?.name)}`);
  const replicaClient = gatewayClient(withReplica.baseUrl);
  const paths = [
    { label: "without replica", client: gatewayClient(primaryOnly.baseUrl), readFrom: undefined },
    { label: "readFrom PRIMARY", client: replicaClient, readFrom: ReadFrom.PRIMARY },
    { label: "readFrom REPLICA", client: replicaClient, readFrom: ReadFrom.REPLICA },
  ];
  for (const { label, client, readFrom } of paths) {
    const expected: Expected =
      readFrom === undefined ? "not named" : readFrom === ReadFrom.REPLICA ? "replica" : "primary";
    const options = readFrom === undefined ? {} : { options: { readFrom } };
    const row = await client.execute({
      sql,
      typedParams: [{ kind: { case: "int64Value", value: 42n } }],
      ...options,
    });
    const id = await client.execute({ sql: "SELECT @@server_id", ...options });
    const name = row.rows[0]?.values[1]?.kind.value;
    const serverId = String(id.rows[0]?.values[0]?.kind.value);
    if (
      name !== "item 42" ||
      !isServedAsExpected(row.servedBy, expected) ||
      !isServedAsExpected(id.servedBy, expected) ||
      serverId !== (expected === "replica" ? "2" : "1")
    ) {
      throw new Error(
        `${label}: ${String(name)} served by ${JSON.stringify(row.servedBy)}, ` +
          `server id ${serverId} (expected item 42 from ${expected})`,
      );
    }
    log(`${label}: served by ${JSON.stringify(row.servedBy)}, server id ${serverId}`);
  }
}

/** One timed run of `target` with every column's CPU time and the machine's. */
async function measure(target: Target, columns: readonly CpuColumn[]): Promise<Sample> {
  const snapshot = () => ({
    atMs: performance.now(),
    used: columns.map((c) => c.cpuMicros()),
    machine: machineBusyMicros(),
  });
  const before = snapshot();
  const result = await runLoad(target.op, callers, seconds);
  const after = snapshot();
  const wallUs = (after.atMs - before.atMs) * 1000;
  const used = after.used.map((v, i) => v - (before.used[i] ?? 0));
  const machine = after.machine - before.machine;
  const other = Math.max(0, machine - used.reduce((sum, v) => sum + v, 0));
  return {
    rate: result.rate,
    p50: percentile(result.latenciesMs, 50),
    p99: percentile(result.latenciesMs, 99),
    perCallUs: used.map((v) => v / result.calls),
    percent: used.map((v) => (100 * v) / wallUs),
    otherPerCallUs: other / result.calls,
    otherPercent: (100 * other) / wallUs,
    machinePercent: (100 * machine) / wallUs,
  };
}

/**
 * Part 2: one caller's replica reads without a position, with one the replica
 * has long applied, with a fresh one per read, and right after a write
 * without one; the variants alternate run by run.
 */
async function measureMinPosition(
  lean: LeanUnaryClient,
  replicaBodies: readonly Uint8Array[],
  gateway: GatewayProcess,
): Promise<Map<ReadVariant, ReadTally>> {
  let version = 0;
  /** Renames a random row through the gateway (on the primary): its id, new name and position. */
  const write = async () => {
    const id = randomId();
    const name = `item ${id} v${++version}`;
    const body = toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, {
        sql: updateSql,
        typedParams: [
          { kind: { case: "stringValue", value: name } },
          { kind: { case: "int64Value", value: BigInt(id) } },
        ],
      }),
    );
    const answer = await execute(lean, 0, body);
    if (answer.rowsAffected !== 1n || parsePosition(answer.position)?.size !== 1) {
      throw new Error(`a write changed ${answer.rowsAffected} rows, position ${answer.position}`);
    }
    return { id, name, position: answer.position };
  };

  // The start write's position, then a pause: the replica has surely applied
  // it and the gateway's check has seen so (its /readyz position is as far).
  const start = await write();
  await new Promise((resolve) => setTimeout(resolve, settleMs));
  const wanted = parsePosition(start.position) ?? new Map();
  await waitForReplicaStatus(gateway, `the gateway's replica position at ${start.position}`, (s) =>
    hasReached(parsePosition(s.position) ?? new Map(), wanted),
  );
  log(`the gateway knows its replica has applied ${start.position}`);
  const withStartPosition = Array.from({ length: rowCount }, (_, i) =>
    pointQuery(i + 1, { readFrom: ReadFrom.REPLICA, minPosition: start.position }),
  );

  const writeThen = (withPosition: boolean) => async () => {
    const { id, name, position } = await write();
    const options = { readFrom: ReadFrom.REPLICA, minPosition: withPosition ? position : "" };
    return { body: pointQuery(id, options), expectName: name };
  };
  const variants: ReadVariant[] = [
    {
      name: "caught up, no minPosition",
      afterWrite: false,
      prepare: async () => ({ body: replicaBodies[randomId() - 1] as Uint8Array }),
    },
    {
      name: "caught up, minPosition of the start write",
      afterWrite: false,
      prepare: async () => ({ body: withStartPosition[randomId() - 1] as Uint8Array }),
    },
    { name: "right after a write, no minPosition", afterWrite: true, prepare: writeThen(false) },
    {
      name: "right after a write, minPosition = its position",
      afterWrite: true,
      prepare: writeThen(true),
    },
  ];

  const tallies = new Map<ReadVariant, ReadTally>();
  /** Reads one after another for `forSeconds`; each `prepare` is untimed. */
  const readFor = async (variant: ReadVariant, forSeconds: number): Promise<LoadResult> => {
    const tally = tallies.get(variant);
    const latencies: number[] = [];
    const started = performance.now();
    const end = started + forSeconds * 1000;
    while (performance.now() < end) {
      const { body, expectName } = await variant.prepare();
      const t0 = performance.now();
      const answer = await execute(lean, 0, body);
      latencies.push(performance.now() - t0);
      // Warm-up reads are not counted.
      if (tally === undefined) continue;
      tally.reads++;
      if (isServedAsExpected(answer.servedBy, "replica")) tally.onReplica++;
      if (expectName !== undefined && answer.rows[0]?.values[1]?.kind.value !== expectName) {
        tally.stale++;
      }
    }
    const elapsed = (performance.now() - started) / 1000;
    const latenciesMs = Float64Array.from(latencies).sort();
    return {
      calls: latencies.length,
      seconds: elapsed,
      rate: latencies.length / elapsed,
      latenciesMs,
    };
  };

  for (const variant of variants) {
    const warm = await readFor(variant, sequentialWarmupSeconds);
    log(`warmed up ${variant.name} with ${warm.calls} reads`);
  }
  for (const variant of variants) {
    tallies.set(variant, { reads: 0, onReplica: 0, stale: 0, p50s: [], p99s: [] });
  }
  for (let run = 1; run <= runs; run++) {
    for (const variant of variants) {
      const result = await readFor(variant, seconds);
      const tally = tallies.get(variant) as ReadTally;
      tally.p50s.push(percentile(result.latenciesMs, 50));
      tally.p99s.push(percentile(result.latenciesMs, 99));
      log(
        `${variant.name}, run ${run}/${runs}: ${result.calls} reads, ` +
          `p50 ${tally.p50s.at(-1)?.toFixed(3)} ms, p99 ${tally.p99s.at(-1)?.toFixed(3)} ms`,
      );
    }
  }
  return tallies;
}

const rate = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
const ms = (n: number) => n.toFixed(3);
const whole = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-");
const signed = (n: number) => `${n >= 0 ? "+" : ""}${ms(n)}`;

interface ThroughputInput {
  readonly samples: ReadonlyMap<Target, readonly Sample[]>;
  readonly columns: readonly CpuColumn[];
  readonly serverVersion: string;
  /** Rate ratios, each the median of the runs' pairs (`of` / `to` in the same run). */
  readonly ratios: readonly { name: string; of: Target; to: Target }[];
  /** The gateway with the replica reading from the primary, and from the replica. */
  readonly readFrom: { readonly primary: Target; readonly replica: Target };
}

function throughputReport({
  samples,
  columns,
  serverVersion,
  ratios,
  readFrom,
}: ThroughputInput): string[] {
  const med = (list: readonly Sample[], pick: (s: Sample) => number) => median(list.map(pick));
  const perCall = (list: readonly Sample[], i: number) => med(list, (s) => s.perCallUs[i] ?? 0);
  const share = (list: readonly Sample[], i: number) => med(list, (s) => s.percent[i] ?? 0);
  const total = (list: readonly Sample[]) =>
    columns.reduce((sum, _, i) => sum + perCall(list, i), 0);
  const ceiling = (us: number) => (cores * 1e6) / us;
  const entries = [...samples.entries()];

  /**
   * One sentence: whether the cores were full (then the rate is cores / CPU
   * per call, and the largest costs are what to cut), or one process sat at
   * a whole core (a Node process runs its JavaScript on one thread), or
   * neither (then calls also wait on hand-offs between processes).
   */
  const limitOf = (list: readonly Sample[]): string => {
    const machine = med(list, (s) => s.machinePercent);
    const sum = total(list);
    const largest = columns
      .map((c, i) => ({ label: c.label, us: perCall(list, i) }))
      .filter((c) => c.us >= 0.15 * sum)
      .sort((a, b) => b.us - a.us)
      .map((c) => `${c.label} ${whole(c.us)} us (${whole((100 * c.us) / sum)}%)`)
      .join(", ");
    const busiest = columns
      .map((c, i) => ({ label: c.label, percent: share(list, i) }))
      .sort((a, b) => b.percent - a.percent)[0];
    const state =
      machine >= 90 * cores
        ? `the ${cores} cores are full (${whole(machine)}% of ${cores * 100} busy, other processes ` +
          `${whole(med(list, (s) => s.otherPercent))}% of a core): CPU-bound`
        : busiest !== undefined && busiest.percent >= 90
          ? `${busiest.label} is at a whole core (${whole(busiest.percent)}%) while the machine is ` +
            `${whole(machine)}% of ${cores * 100} busy: bound by that one process`
          : `no hard limit reached (machine ${whole(machine)}% of ${cores * 100} busy, the busiest ` +
            `process ${busiest?.label} at ${whole(busiest?.percent ?? Number.NaN)}% of a core): ` +
            "calls also wait on hand-offs between the processes";
    return `${state}; ${whole(sum)} us of CPU per call, mostly ${largest}.`;
  };

  return [
    `## Read replicas: point queries on the primary and on a GTID replica, ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}; a MariaDB primary and its GTID replica on the same machine; ` +
      `${callers} callers over ${sessions} HTTP/2 connections per gateway (lean h2 client, ` +
      `Connect binary), pool ${poolSize} in mysql2 and per server in each gateway; ` +
      `${rowCount} rows; warm-up ${warmupCalls} calls (at most ${warmupSeconds} s) per path, ` +
      `then ${runs} run(s) of ${seconds} s per path, the paths alternating; medians of the runs. ` +
      `The gateway with the replica: ${Object.entries(replicaSettings)
        .map(([k, v]) => `${k}=${v}`)
        .join(", ")}.`,
    "",
    "### 1. Throughput",
    "",
    `| path | calls/s | calls/s min-max | p50 ms | p99 ms | served elsewhere | machine busy, % of ${cores * 100} |`,
    "|---|---:|---:|---:|---:|---:|---:|",
    ...entries.map(([target, list]) => {
      const rates = list.map((s) => s.rate);
      return (
        `| ${target.name} | ${rate(median(rates))} | ${rate(Math.min(...rates))}-${rate(Math.max(...rates))} | ` +
        `${ms(med(list, (s) => s.p50))} | ${ms(med(list, (s) => s.p99))} | ${target.elsewhere} | ` +
        `${whole(med(list, (s) => s.machinePercent))} |`
      );
    }),
    "",
    "Served elsewhere: timed calls whose `servedBy` named another server than the path asks for " +
      "(a replica read that fell back to the primary), over all runs.",
    "",
    "| ratio of calls/s | median of the runs | range |",
    "|---|---:|---:|",
    ...ratios.map(({ name, of, to }) => {
      const tos = samples.get(to) ?? [];
      const pairs = (samples.get(of) ?? []).map((s, i) => s.rate / (tos[i]?.rate ?? Number.NaN));
      return (
        `| ${name} | ${median(pairs).toFixed(3)} | ` +
        `${Math.min(...pairs).toFixed(3)}-${Math.max(...pairs).toFixed(3)} |`
      );
    }),
    "",
    "CPU per call, us (utime + stime from /proc; other: the rest of the machine meanwhile, from " +
      `/proc/stat). The ceiling is ${cores} cores / the CPU per call of the processes measured: ` +
      `the rate these ${cores} cores would allow if nothing else ran; without the load ` +
      "generator: if it had its own machine.",
    "",
    `| path | ${columns.map((c) => c.label).join(" | ")} | total measured | other | ceiling calls/s | ceiling without load generator |`,
    `|---|${columns.map(() => "---:").join("|")}|---:|---:|---:|---:|`,
    ...entries.map(([target, list]) => {
      const sum = total(list);
      return (
        `| ${target.name} | ${columns.map((_, i) => whole(perCall(list, i))).join(" | ")} | ` +
        `${whole(sum)} | ${whole(med(list, (s) => s.otherPerCallUs))} | ${rate(ceiling(sum))} | ` +
        `${rate(ceiling(sum - perCall(list, 0)))} |`
      );
    }),
    "",
    "CPU use, % of one core:",
    "",
    `| path | ${columns.map((c) => c.label).join(" | ")} | other | machine, of ${cores * 100} |`,
    `|---|${columns.map(() => "---:").join("|")}|---:|---:|`,
    ...entries.map(
      ([target, list]) =>
        `| ${target.name} | ${columns.map((_, i) => whole(share(list, i))).join(" | ")} | ` +
        `${whole(med(list, (s) => s.otherPercent))} | ${whole(med(list, (s) => s.machinePercent))} |`,
    ),
    "",
    "What limits each path (from the medians above):",
    "",
    ...entries.map(([target, list]) => `- ${target.name}: ${limitOf(list)}`),
    "",
    offloadLine(),
    "",
  ];

  /**
   * What reading from the replica moves: MariaDB's work per call goes from
   * the primary to the replica, the gateway's stays. Where both servers share
   * the cores, as here, that frees the primary but adds no capacity.
   */
  function offloadLine(): string {
    const column = (label: string) => columns.findIndex((c) => c.label === label);
    const [gateway, onPrimary, onReplica] = [
      "gateway with replica",
      "primary mariadbd",
      "replica mariadbd",
    ].map(column) as [number, number, number];
    const primaryList = samples.get(readFrom.primary) ?? [];
    const replicaList = samples.get(readFrom.replica) ?? [];
    const share = perCall(replicaList, gateway) / total(replicaList);
    return (
      "Reading from the replica moves MariaDB's CPU per call from the primary " +
      `(${whole(perCall(primaryList, onPrimary))} us with readFrom PRIMARY, ` +
      `${whole(perCall(replicaList, onPrimary))} us with REPLICA) to the replica ` +
      `(${whole(perCall(replicaList, onReplica))} us); the gateway's is ` +
      `${whole(perCall(primaryList, gateway))} us reading from the primary and ` +
      `${whole(perCall(replicaList, gateway))} us from the replica. Here both servers share the ` +
      `same ${cores} cores as the gateway and the load generator, so the replica relieves the ` +
      "primary but adds no capacity" +
      (share >= 0.5
        ? `: the gateway, ${whole(100 * share)}% of the CPU per call, sets the rate.`
        : ".")
    );
  }
}

function minPositionReport(tallies: ReadonlyMap<ReadVariant, ReadTally>): string[] {
  const entries = [...tallies.entries()];
  const [plain, known, afterWrite, waited] = entries.map(([, tally]) => tally) as [
    ReadTally,
    ReadTally,
    ReadTally,
    ReadTally,
  ];
  const p50 = (tally: ReadTally) => median(tally.p50s);
  /** The runs' paired p50 differences (`of` - `to`, same run): their median and range. */
  const paired = (of: ReadTally, to: ReadTally) => {
    const diffs = of.p50s.map((v, i) => v - (to.p50s[i] ?? Number.NaN));
    return `${signed(median(diffs))} ms (runs ${signed(Math.min(...diffs))} to ${signed(Math.max(...diffs))})`;
  };
  const cost = p50(known) - p50(plain);
  const percent = (part: number, of: number) => `${((100 * part) / of).toFixed(1)}%`;
  return [
    "### 2. What minPosition costs one caller",
    "",
    `One caller, readFrom REPLICA, ${runs} run(s) of ${seconds} s per variant, the variants ` +
      `alternating, after ${sequentialWarmupSeconds} s of warm-up each; medians of the runs. ` +
      "Only the read is timed: the writes (a row renamed through the gateway, on the primary) " +
      `are not. The start write was made ${settleMs} ms before the first read and the gateway's ` +
      "check had seen the replica apply it (its /readyz position), so those reads need no wait.",
    "",
    "| variant | reads | p50 ms | p99 ms | served by the replica | stale |",
    "|---|---:|---:|---:|---:|---:|",
    ...entries.map(
      ([variant, tally]) =>
        `| ${variant.name} | ${tally.reads} | ${ms(p50(tally))} | ${ms(median(tally.p99s))} | ` +
        `${percent(tally.onReplica, tally.reads)} | ` +
        `${variant.afterWrite ? `${tally.stale} (${percent(tally.stale, tally.reads)})` : "-"} |`,
    ),
    "",
    `- minPosition already reached adds ${signed(cost)} ms at p50 ` +
      `(median of the runs' differences: ${paired(known, plain)}); goal under 0.2 ms: ` +
      `${cost < 0.2 ? "met" : "not met"}.`,
    `- A fresh position (MASTER_GTID_WAIT on the replica before the read) adds ` +
      `${paired(waited, afterWrite)} at p50 over a read right after a write without one, and ` +
      `${signed(p50(waited) - p50(plain))} ms over a read of a caught-up replica; ` +
      `p99 ${ms(median(waited.p99s))} ms. Without a position, ` +
      `${percent(afterWrite.stale, afterWrite.reads)} of the reads right after a write did not ` +
      "see it (stale); with it, reads the replica did not reach in time go to the primary " +
      `(${percent(waited.reads - waited.onReplica, waited.reads)} here).`,
    "",
  ];
}

await runBenchmark(main);
