/**
 * Replicas benchmark: point queries (primary-key lookups) from many
 * concurrent callers through HAProxy to ONE gateway replica and to THREE,
 * against the same gateway without the proxy and against direct mysql2, in
 * one run on one private MariaDB, the paths alternating. The replicas are
 * real gateway processes (compiled JS) sharing the database and a token
 * secret and listing each other in SQLGATE_PEERS, as deployed; HAProxy runs
 * through scripts/haproxy.sh from deploy/haproxy/haproxy.cfg, so what is
 * measured is the shipped configuration (its access log line per request
 * included, written to /dev/null here).
 *
 * On a small machine the load generator, HAProxy, the gateways and MariaDB
 * share the same cores, so a rate alone does not say what limits it. Every
 * run also takes each process's CPU time from /proc: the report gives CPU per
 * call by process, each one's share of a core, what the machine's other
 * processes used meanwhile, and the rate the cores would allow at that cost.
 * The load comes from the lean h2 client (support/lean-h2-client.ts), with
 * every request body encoded beforehand, to keep the generator's own share
 * small; for the direct path the "load generator" is mysql2 itself.
 *
 *   BENCH_ONLY=replicas npm run bench
 *   BENCH_ONLY=replicas BENCH_SECONDS=3 BENCH_RUNS=2 npm run bench
 *
 * Settings (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CALLERS
 * (64), BENCH_SESSIONS (4: HTTP/2 connections from the load generator to the
 * gateway or HAProxy; one HAProxy connection is served by one of its
 * threads), BENCH_POOL_SIZE (16: mysql2's pool and each replica's),
 * BENCH_ROWS (10000), BENCH_WARMUP_CALLS (20000 per path and per replica),
 * BENCH_WARMUP_SECONDS (30, each warm-up's cap). Prints a markdown report and
 * writes it to bench/out/replicas.md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import mysql from "mysql2/promise";
import {
  DatabaseService,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
} from "../gen/sqlgate/v1/database_pb.js";
import { freePort, type GatewayProcess, startGatewayProcess } from "./support/gateway-process.js";
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
import { createLeanUnaryClient } from "./support/lean-h2-client.js";
import { median, percentile, runLoad } from "./support/load.js";
import { machineBusyMicros, ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const callers = Math.round(setting("BENCH_CALLERS", 64));
const sessions = Math.round(setting("BENCH_SESSIONS", 4));
const poolSize = Math.round(setting("BENCH_POOL_SIZE", 16));
const rowCount = Math.round(setting("BENCH_ROWS", 10_000));
const warmupCalls = Math.round(setting("BENCH_WARMUP_CALLS", 20_000, 0));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 30, 0);
const replicaCount = 3;
const cores = os.cpus().length;
const secret = "a-bench-token-secret-of-32-characters-or-more";
// The same statement and table as bench/point-query.ts, so the figures compare.
const sql = "SELECT id, name, price, created FROM bench_items WHERE id = ?";
const executePath = `/${DatabaseService.typeName}/${DatabaseService.method.execute.name}`;
const randomId = () => 1 + Math.floor(Math.random() * rowCount);

/** A way to run the point query: one column of the report. */
interface Target {
  readonly name: string;
  readonly op: (caller: number) => Promise<void>;
}

/** One process, or a set of them, whose CPU time the report shows as one column. */
interface CpuColumn {
  readonly label: string;
  /** Columns of one group (the gateway replicas) are also summed. */
  readonly group: string;
  readonly cpuMicros: () => number;
}

interface CpuSnapshot {
  readonly atMs: number;
  /** CPU microseconds so far, one per column. */
  readonly used: readonly number[];
  /** The whole machine's busy CPU microseconds so far. */
  readonly machine: number;
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

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const direct = mysql.createPool({
    socketPath: db.socketPath,
    user: "root",
    database: db.database,
    connectionLimit: poolSize,
  });
  onCleanup(() => direct.end());
  await loadRows(direct);

  // Ports chosen up front: every replica is told all of them (SQLGATE_PEERS).
  const ports = new Set<number>();
  while (ports.size < replicaCount) ports.add(await freePort());
  const peers = [...ports].map((port) => `http://127.0.0.1:${port}`).join(",");
  log(`starting ${replicaCount} gateway replicas on ports ${[...ports].join(", ")}`);
  const replicas = await Promise.all(
    [...ports].map(async (port, i) => {
      const gateway = await startGatewayProcess({
        mysqlUrl: db.url,
        poolSize,
        dataDir: path.join(dataDir, `replica-${i + 1}`),
        port,
        env: { SQLGATE_TOKEN_SECRET: secret, SQLGATE_PEERS: peers },
      });
      onCleanup(() => gateway.stop());
      return { name: `g${i + 1}`, port, gateway };
    }),
  );
  const [first] = replicas;
  if (first === undefined) throw new Error("no replica");
  log(
    `starting HAProxy in front of g1, and another in front of ${replicas.map((r) => r.name).join(", ")}`,
  );
  const haproxyOne = await startHaproxy(dataDir, [first]);
  const haproxyAll = await startHaproxy(dataDir, replicas);

  // Every request body encoded once, before any timing: the generator's
  // work per call is then only HTTP/2 and decoding the answer.
  const bodies = Array.from({ length: rowCount }, (_, i) =>
    toBinary(
      ExecuteRequestSchema,
      create(ExecuteRequestSchema, {
        sql,
        typedParams: [{ kind: { case: "int64Value", value: BigInt(i + 1) } }],
      }),
    ),
  );
  const leanExecute = (baseUrl: string) => {
    const lean = createLeanUnaryClient(baseUrl, sessions);
    return async (caller: number) => {
      const id = randomId();
      const answer = await lean.call(caller, executePath, bodies[id - 1] as Uint8Array);
      const { rows } = fromBinary(ExecuteResponseSchema, answer);
      if (rows.length !== 1) throw new Error(`id ${id}: ${rows.length} rows, expected 1`);
    };
  };
  const targets: Target[] = [
    {
      name: "direct mysql2",
      op: async () => {
        await direct.execute(sql, [randomId()]);
      },
    },
    { name: "gateway g1, direct", op: leanExecute(first.gateway.baseUrl) },
    { name: "HAProxy -> 1 replica", op: leanExecute(haproxyOne.baseUrl) },
    { name: `HAProxy -> ${replicaCount} replicas`, op: leanExecute(haproxyAll.baseUrl) },
  ];
  const [directTarget, gatewayTarget, viaOne, viaAll] = targets as [Target, Target, Target, Target];

  await sanityCheck(direct, first.gateway, haproxyOne, haproxyAll, replicas);

  // V8 settles a gateway's code only after ~10,000 calls (bench/point-query.ts):
  // each replica warms up on its own first, since g2 and g3 see a third of
  // the 3-replica path's calls at most, then every path, in 1 s slices until
  // BENCH_WARMUP_CALLS calls or the time cap.
  const warmups = [
    ...replicas
      .slice(1)
      .map((r) => ({ name: `gateway ${r.name}, direct`, op: leanExecute(r.gateway.baseUrl) })),
    ...targets,
  ];
  for (const target of warmups) {
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

  const columns: CpuColumn[] = [
    { label: "load generator", group: "load generator", cpuMicros: ownCpuMicros },
    // Both HAProxy processes: the idle one only runs its health checks (one
    // per server every 500 ms).
    {
      label: "HAProxy",
      group: "HAProxy",
      cpuMicros: () => processCpuMicros(haproxyOne.pid) + processCpuMicros(haproxyAll.pid),
    },
    ...replicas.map((r) => ({
      label: `gateway ${r.name}`,
      group: "gateways",
      cpuMicros: () => processCpuMicros(r.gateway.pid),
    })),
    { label: "MariaDB", group: "MariaDB", cpuMicros: () => processCpuMicros(db.pid) },
  ];
  const snapshot = (): CpuSnapshot => ({
    atMs: performance.now(),
    used: columns.map((c) => c.cpuMicros()),
    machine: machineBusyMicros(),
  });

  const samples = new Map<Target, Sample[]>(targets.map((t) => [t, []]));
  for (let run = 1; run <= runs; run++) {
    for (const target of targets) {
      const before = snapshot();
      const result = await runLoad(target.op, callers, seconds);
      const after = snapshot();
      const wallUs = (after.atMs - before.atMs) * 1000;
      const used = after.used.map((v, i) => v - (before.used[i] ?? 0));
      const ours = used.reduce((sum, v) => sum + v, 0);
      const machine = after.machine - before.machine;
      const other = Math.max(0, machine - ours);
      const sample: Sample = {
        rate: result.rate,
        p50: percentile(result.latenciesMs, 50),
        p99: percentile(result.latenciesMs, 99),
        perCallUs: used.map((v) => v / result.calls),
        percent: used.map((v) => (100 * v) / wallUs),
        otherPerCallUs: other / result.calls,
        otherPercent: (100 * other) / wallUs,
        machinePercent: (100 * machine) / wallUs,
      };
      samples.get(target)?.push(sample);
      log(
        `${target.name}, run ${run}/${runs}: ${Math.round(sample.rate)} calls/s, ` +
          `p50 ${sample.p50.toFixed(3)} ms, p99 ${sample.p99.toFixed(3)} ms, ` +
          `machine ${Math.round(sample.machinePercent)}% of ${cores * 100}%`,
      );
    }
  }

  writeReport(
    "replicas.md",
    report({
      samples,
      columns,
      serverVersion,
      gatewayPaths: [gatewayTarget, viaOne, viaAll],
      ratios: [
        { name: "gateway direct / mysql2 direct", of: gatewayTarget, to: directTarget },
        { name: "HAProxy -> 1 / gateway direct", of: viaOne, to: gatewayTarget },
        { name: `HAProxy -> ${replicaCount} / HAProxy -> 1`, of: viaAll, to: viaOne },
        { name: "HAProxy -> 1 / mysql2 direct", of: viaOne, to: directTarget },
        { name: `HAProxy -> ${replicaCount} / mysql2 direct`, of: viaAll, to: directTarget },
      ],
    }),
  );
}

/** The point-query table of bench/point-query.ts: `rowCount` rows, 1,000 per INSERT. */
async function loadRows(pool: mysql.Pool): Promise<void> {
  log(`loading ${rowCount} rows into bench_items`);
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
 * Before anything is timed: every path returns the same row, and HAProxy
 * spreads calls as intended (its `sqlgate-backend` answer header names the
 * replica that served each call).
 */
async function sanityCheck(
  direct: mysql.Pool,
  gateway: GatewayProcess,
  haproxyOne: Haproxy,
  haproxyAll: Haproxy,
  replicas: readonly { name: string }[],
): Promise<void> {
  const [check] = await direct.execute<mysql.RowDataPacket[]>(sql, [42]);
  if (check[0]?.name !== "item 42") throw new Error(`direct mysql2: ${String(check[0]?.name)}`);
  const request = create(ExecuteRequestSchema, {
    sql,
    typedParams: [{ kind: { case: "int64Value", value: 42n } }],
  });
  for (const [label, baseUrl, expected] of [
    ["gateway g1", gateway.baseUrl, undefined],
    ["HAProxy -> 1", haproxyOne.baseUrl, ["g1"]],
    [`HAProxy -> ${replicas.length}`, haproxyAll.baseUrl, replicas.map((r) => r.name)],
  ] as const) {
    const client = gatewayClient(baseUrl);
    const served = new Set<string>();
    for (let i = 0; i < 3 * replicas.length; i++) {
      const answer = await client.execute(request, {
        onHeader: (headers) => served.add(headers.get("sqlgate-backend") ?? "none"),
      });
      const name = answer.rows[0]?.values[1]?.kind.value;
      if (name !== "item 42") throw new Error(`${label}: ${String(name)}, expected item 42`);
    }
    const seen = [...served].sort().join(",");
    if (expected !== undefined && seen !== [...expected].sort().join(",")) {
      throw new Error(`${label}: calls served by ${seen}, expected ${expected.join(",")}`);
    }
  }
}

/** HAProxy run by scripts/haproxy.sh, which `exec`s it: the child's PID is HAProxy's. */
interface Haproxy {
  readonly baseUrl: string;
  readonly pid: number;
}

/**
 * Runs scripts/haproxy.sh in front of `backends` on a free port, its state
 * (rendered haproxy.cfg, stats socket) in a new directory under `parentDir`,
 * and resolves once every server is UP after a passing health check. The
 * access log (stdout) goes to /dev/null; stderr is kept for errors. A port
 * picked free may be taken before HAProxy binds it: then another is tried.
 */
async function startHaproxy(
  parentDir: string,
  backends: readonly { name: string; port: number }[],
): Promise<Haproxy> {
  const script = fileURLToPath(new URL("../../scripts/haproxy.sh", import.meta.url));
  const stateDir = mkdtempSync(path.join(parentDir, "haproxy-"));
  const socket = path.join(stateDir, "haproxy.sock");
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const child = spawn(script, [], {
      env: {
        ...process.env,
        SQLGATE_HAPROXY_BACKENDS: backends.map((b) => `${b.name}=127.0.0.1:${b.port}`).join(" "),
        SQLGATE_HAPROXY_LISTEN: `127.0.0.1:${port}`,
        SQLGATE_HAPROXY_STATE_DIR: stateDir,
      },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let errors = "";
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      errors = (errors + text).slice(-4000);
    });
    const stop = () => stopChild(child);
    try {
      await waitForServersUp(child, socket, backends.length, () => errors);
    } catch (err) {
      lastError = err;
      await stop();
      continue;
    }
    onCleanup(stop);
    return { baseUrl: `http://127.0.0.1:${port}`, pid: child.pid as number };
  }
  throw lastError;
}

/** Polls HAProxy's `show stat` until all `count` servers of backend `gateways` are UP (15 s at most). */
async function waitForServersUp(
  child: ChildProcess,
  socket: string,
  count: number,
  errors: () => string,
): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    const servers = (await showStat(socket).catch(() => [])).filter(
      (s) => s.backend === "gateways",
    );
    if (
      servers.length === count &&
      servers.every((s) => s.status === "UP" && s.checkStatus === "L7OK")
    ) {
      return;
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`haproxy exited: ${errors()}`);
    }
    if (Date.now() > until) {
      throw new Error(`haproxy servers not UP within 15 s: ${JSON.stringify(servers)} ${errors()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** HAProxy's `show stat` over its stats socket: each server's backend, name and state. */
async function showStat(
  socket: string,
): Promise<{ backend: string; server: string; status: string; checkStatus: string }[]> {
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
  const cell = (cells: string[], name: string) => cells[columns.indexOf(name)] ?? "";
  return rows
    .map((row) => row.split(","))
    .filter((cells) => !["FRONTEND", "BACKEND"].includes(cell(cells, "svname")))
    .map((cells) => ({
      backend: cell(cells, "pxname"),
      server: cell(cells, "svname"),
      status: cell(cells, "status"),
      checkStatus: cell(cells, "check_status"),
    }));
}

/** SIGTERM (HAProxy stops at once), then SIGKILL if it has not exited within 5 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}

interface ReportInput {
  readonly samples: ReadonlyMap<Target, readonly Sample[]>;
  readonly columns: readonly CpuColumn[];
  readonly serverVersion: string;
  /** The gateway called directly, through HAProxy to one replica, and to all of them. */
  readonly gatewayPaths: readonly [Target, Target, Target];
  /** Rate ratios, each the median of the runs' pairs (`of` / `to` in the same run). */
  readonly ratios: readonly { name: string; of: Target; to: Target }[];
}

function report({ samples, columns, serverVersion, gatewayPaths, ratios }: ReportInput): string {
  const rate = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
  const ms = (n: number) => n.toFixed(3);
  const whole = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-");
  const med = (list: readonly Sample[], pick: (s: Sample) => number) => median(list.map(pick));
  const perCall = (list: readonly Sample[], i: number) => med(list, (s) => s.perCallUs[i] ?? 0);
  const share = (list: readonly Sample[], i: number) => med(list, (s) => s.percent[i] ?? 0);
  /** The measured processes' CPU per call, summed (column 0 is the load generator). */
  const ours = (list: readonly Sample[]) =>
    columns.reduce((sum, _, i) => sum + perCall(list, i), 0);
  const ceiling = (us: number) => (cores * 1e6) / us;
  /** CPU per call by group (the replicas summed), largest first. */
  const byGroup = (list: readonly Sample[]) => {
    const sums = new Map<string, number>();
    for (const [i, c] of columns.entries()) {
      sums.set(c.group, (sums.get(c.group) ?? 0) + perCall(list, i));
    }
    return [...sums].map(([group, us]) => ({ group, us })).sort((a, b) => b.us - a.us);
  };
  const entries = [...samples.entries()];

  const lines = [
    `## Point queries through HAProxy: 1 vs ${replicaCount} gateway replicas, ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}; ${callers} callers over ${sessions} HTTP/2 connections ` +
      `(lean h2 client, Connect binary), pool ${poolSize} in mysql2 and in each replica; ` +
      `${rowCount} rows; warm-up ${warmupCalls} calls (at most ${warmupSeconds} s) per path and ` +
      `per replica, then ${runs} run(s) of ${seconds} s per path, the paths alternating; ` +
      "medians of the runs. HAProxy: deploy/haproxy/haproxy.cfg as shipped (access log to /dev/null).",
    "",
    `| path | calls/s | calls/s min-max | p50 ms | p99 ms | machine busy, % of ${cores * 100} |`,
    "|---|---:|---:|---:|---:|---:|",
    ...entries.map(([target, list]) => {
      const rates = list.map((s) => s.rate);
      return (
        `| ${target.name} | ${rate(median(rates))} | ${rate(Math.min(...rates))}-${rate(Math.max(...rates))} | ` +
        `${ms(med(list, (s) => s.p50))} | ${ms(med(list, (s) => s.p99))} | ${whole(med(list, (s) => s.machinePercent))} |`
      );
    }),
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
    "CPU per call, us (utime + stime from /proc; HAProxy: both instances, the idle one only " +
      "health-checks; other: the rest of the machine meanwhile, from /proc/stat). The ceiling is " +
      `${cores} cores / the CPU per call of the processes measured: the rate these ${cores} cores ` +
      "would allow if nothing else ran; without the load generator: if it had its own machine.",
    "",
    `| path | ${columns.map((c) => c.label).join(" | ")} | all gateways | total measured | other | ceiling calls/s | ceiling without load generator |`,
    `|---|${columns.map(() => "---:").join("|")}|---:|---:|---:|---:|---:|`,
    ...entries.map(([target, list]) => {
      const total = ours(list);
      return (
        `| ${target.name} | ${columns.map((_, i) => whole(perCall(list, i))).join(" | ")} | ` +
        `${whole(byGroup(list).find((g) => g.group === "gateways")?.us ?? Number.NaN)} | ` +
        `${whole(total)} | ${whole(med(list, (s) => s.otherPerCallUs))} | ${rate(ceiling(total))} | ` +
        `${rate(ceiling(total - perCall(list, 0)))} |`
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
    spreadLine(),
    "",
  ];
  return lines.join("\n");

  /**
   * What a replica more changes: the gateways' CPU per call, summed over the
   * replicas, on each gateway path; and whether there was a free core for
   * the extra processes to use.
   */
  function spreadLine(): string {
    const [direct, one, all] = gatewayPaths.map((t) => samples.get(t) ?? []) as [
      readonly Sample[],
      readonly Sample[],
      readonly Sample[],
    ];
    const gateways = (list: readonly Sample[]) =>
      whole(byGroup(list).find((g) => g.group === "gateways")?.us ?? Number.NaN);
    const machine = med(all, (s) => s.machinePercent);
    return (
      `The gateways' CPU per call, all replicas summed: ${gateways(direct)} us called directly, ` +
      `${gateways(one)} us through HAProxy to one replica, ${gateways(all)} us spread over ` +
      `${replicaCount}. ` +
      (machine >= 90 * cores
        ? `With ${replicaCount} replicas the machine was ${whole(machine)}% of ${cores * 100} busy: ` +
          "more processes find no free core, so the rate follows the total CPU per call."
        : `With ${replicaCount} replicas the machine was ${whole(machine)}% of ${cores * 100} busy: ` +
          "CPU was left over.")
    );
  }

  /**
   * One sentence: whether the machine's cores were full (then the rate is
   * cores / CPU per call, and the largest per-call costs are what to cut),
   * or one process sat at a whole core (a Node process runs its JavaScript
   * on one thread), or neither (then calls also wait on hand-offs between
   * processes, and the busiest one is the nearest limit).
   */
  function limitOf(list: readonly Sample[]): string {
    const machine = med(list, (s) => s.machinePercent);
    const total = ours(list);
    const largest = byGroup(list)
      .filter((g) => g.us >= 0.15 * total)
      .map((g) => `${g.group} ${whole(g.us)} us (${whole((100 * g.us) / total)}%)`)
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
    return `${state}; ${whole(total)} us of CPU per call, mostly ${largest}.`;
  }
}

await runBenchmark(main);
