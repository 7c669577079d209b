/**
 * Point-query benchmark: primary-key lookups through the gateway (its own
 * process) against direct mysql2 with the same pool size, in one run on one
 * private MariaDB, the paths alternating within each run.
 *
 * Gateway paths: Connect binary over h2c driven by h2load (C, so that the
 * load generator leaves the two cores to the gateway and MariaDB; see
 * scripts/ensure-h2load.sh) at each caller count; at the highest count also
 * the other protocols through h2load (Connect JSON over HTTP/1.1, gRPC over
 * h2c), and the clients people use: connect-node (Connect binary, h2c) and
 * @planetscale/database over fetch (PlanetScale's API, HTTP/1.1).
 * h2load repeats one request (id 42); the Node.js clients pick a random id.
 * The floor: h2load against Node's HTTP/2 server with no gateway work at all
 * (support/bare-h2-server.ts; its CPU in the gateway column).
 *
 *   npm run bench                          # everything, then bench/RESULTS.md
 *   BENCH_ONLY=point BENCH_RUNS=1 npm run bench
 *
 * Settings (environment): BENCH_SECONDS (3), BENCH_RUNS (3), BENCH_CALLERS
 * (1,64), BENCH_POOL_SIZE (16, both ways), BENCH_ROWS (10000),
 * BENCH_WARMUP_SECONDS (5 per path), BENCH_TARGETS (a comma list of h2load,
 * bare, json-http1, grpc, connect-node, planetscale; default all),
 * BENCH_GATEWAY_NODE_ARGS (extra node options for the gateway, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof"). Prints a markdown table and writes
 * it to bench/out/point-query.md, its headline figures to point-query.json.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Client as PlanetScaleClient } from "@planetscale/database";
import mysql from "mysql2/promise";
import {
  DatabaseService,
  type ExecuteRequest,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
} from "../gen/sqlgate/v1/database_pb.js";
import { freePort, startGatewayProcess } from "./support/gateway-process.js";
import { runH2load } from "./support/h2load.js";
import {
  type Figure,
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
import { type LoadResult, median, percentile, runLoad } from "./support/load.js";
import { ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const seconds = setting("BENCH_SECONDS", 3);
const runs = Math.round(setting("BENCH_RUNS", 3));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 5, 0);
const poolSize = Math.round(setting("BENCH_POOL_SIZE", 16));
const rowCount = Math.round(setting("BENCH_ROWS", 10_000));
const callersList = (process.env.BENCH_CALLERS || "1,64").split(",").map(Number);
const gatewayNodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
const targetFilter = (process.env.BENCH_TARGETS ?? "").split(",").filter(Boolean);
const sql = "SELECT id, name, price, created FROM bench_items WHERE id = ?";
const randomId = () => 1 + Math.floor(Math.random() * rowCount);
const topCallers = Math.max(...callersList);
const executePath = `/${DatabaseService.typeName}/${DatabaseService.method.execute.name}`;

/** One run's calls, and the load generator's CPU over it (microseconds). */
interface Measured {
  readonly result: LoadResult;
  readonly clientCpuMicros: number;
}

interface Target {
  readonly id: string;
  readonly name: string;
  /** The caller counts this path runs at. */
  readonly callers: readonly number[];
  /** The process whose CPU the gateway column shows, if not the gateway's. */
  readonly serverPid?: number;
  load(callers: number, seconds: number): Promise<Measured>;
}

interface Sample {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU microseconds per call: the load generator, the gateway, MariaDB. */
  readonly clientCpu: number;
  readonly gatewayCpu: number;
  readonly mysqlCpu: number;
}

/** A target whose calls `op` makes from this process, `callers` at a time. */
function inProcess(op: () => Promise<unknown>) {
  return async (callers: number, secs: number): Promise<Measured> => {
    const before = ownCpuMicros();
    const result = await runLoad(op, callers, secs);
    return { result, clientCpuMicros: ownCpuMicros() - before };
  };
}

/** h2load's connections and streams per connection for `callers` calls in flight. */
function h2loadShape(callers: number): { connections: number; streams: number } {
  const connections = Math.min(callers, 8);
  return { connections, streams: Math.ceil(callers / connections) };
}

/** bench/support/bare-h2-server.ts as a child process on a free port. */
async function startBareServer(): Promise<{ url: string; pid: number }> {
  const port = await freePort();
  const script = fileURLToPath(new URL("./support/bare-h2-server.js", import.meta.url));
  const child = spawn(process.execPath, [script, String(port)], { stdio: ["ignore", "pipe", 2] });
  onCleanup(async () => {
    child.kill("SIGTERM");
  });
  if (child.stdout === null || child.pid === undefined) {
    throw new Error("the bare HTTP/2 server did not start");
  }
  await once(child.stdout, "data");
  return { url: `http://127.0.0.1:${port}`, pid: child.pid };
}

/** A gRPC message: the 5-byte envelope (uncompressed, its length), then the message. */
function grpcEnvelope(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.byteLength);
  new DataView(out.buffer).setUint32(1, message.byteLength);
  out.set(message, 5);
  return out;
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

  log(`loading ${rowCount} rows into bench_items`);
  await direct.query(
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
    await direct.query("INSERT INTO bench_items (id, name, price, created) VALUES ?", [rows]);
  }

  log("starting the gateway (node dist/server/main.js)");
  const gateway = await startGatewayProcess({
    mysqlUrl: db.url,
    poolSize,
    dataDir,
    nodeArgs: gatewayNodeArgs,
  });
  onCleanup(() => gateway.stop());
  const client = gatewayClient(gateway.baseUrl);
  // A Client makes a new connection (session) per call, as serverless code does.
  const planetscale = new PlanetScaleClient({
    url: gateway.baseUrl.replace("http://", "http://bench:bench@"),
  });
  const request = (id: number) =>
    create(ExecuteRequestSchema, {
      sql,
      typedParams: [{ kind: { case: "int64Value", value: BigInt(id) } }],
    });
  const binaryBody = toBinary(ExecuteRequestSchema, request(42));
  const jsonBody = new TextEncoder().encode(JSON.stringify({ sql, params: [42] }));
  const url = `${gateway.baseUrl}${executePath}`;
  const h2load =
    (body: Uint8Array, headers: Record<string, string>, http1 = false) =>
    async (callers: number, secs: number): Promise<Measured> => {
      const shape = http1 ? { connections: callers, streams: 1 } : h2loadShape(callers);
      const result = await runH2load({ url, body, headers, seconds: secs, http1, ...shape });
      if (result.failed > 0) throw new Error(`h2load: ${result.failed} calls failed`);
      return { result, clientCpuMicros: result.clientCpuMicros };
    };
  const grpcClient = new grpc.Client(
    gateway.baseUrl.replace("http://", ""),
    grpc.credentials.createInsecure(),
  );
  onCleanup(async () => grpcClient.close());

  // The floor: Node's HTTP/2 server answering a fixed body, no gateway work.
  const bare = await startBareServer();
  const allTargets: Target[] = [
    {
      id: "direct",
      name: "direct mysql2",
      callers: callersList,
      load: inProcess(() => direct.execute(sql, [randomId()])),
    },
    {
      id: "h2load",
      name: "gateway, Connect binary, h2c (h2load)",
      callers: callersList,
      load: h2load(binaryBody, { "content-type": "application/proto" }),
    },
    {
      id: "bare",
      name: "bare node:http2 server, fixed 200-byte answer, no gateway (h2load)",
      callers: callersList,
      serverPid: bare.pid,
      load: async (callers, secs) => {
        const result = await runH2load({
          url: `${bare.url}${executePath}`,
          body: binaryBody,
          headers: { "content-type": "application/proto" },
          seconds: secs,
          ...h2loadShape(callers),
        });
        return { result, clientCpuMicros: result.clientCpuMicros };
      },
    },
    {
      id: "json-http1",
      name: "gateway, Connect JSON, HTTP/1.1 (h2load --h1)",
      callers: [topCallers],
      load: h2load(jsonBody, { "content-type": "application/json" }, true),
    },
    {
      id: "grpc",
      name: "gateway, gRPC, h2c (h2load)",
      callers: [topCallers],
      load: h2load(grpcEnvelope(binaryBody), {
        "content-type": "application/grpc",
        te: "trailers",
      }),
    },
    {
      id: "connect-node",
      name: "gateway, Connect binary, h2c (connect-node client)",
      callers: [topCallers],
      load: inProcess(() => client.execute(request(randomId()))),
    },
    {
      id: "planetscale",
      name: "PlanetScale API (@planetscale/database, fetch, HTTP/1.1)",
      callers: [topCallers],
      load: inProcess(() => planetscale.execute(sql, [randomId()])),
    },
  ];
  const targets = allTargets.filter(
    (t) => t.id === "direct" || targetFilter.length === 0 || targetFilter.includes(t.id),
  );

  // Every path must return the same row before anything is timed.
  const [check] = await direct.execute<mysql.RowDataPacket[]>(sql, [42]);
  const names = {
    direct: check[0]?.name,
    connect: (await client.execute(request(42))).rows[0]?.values[1]?.kind.value,
    planetscale: ((await planetscale.execute(sql, [42])).rows[0] as { name?: string } | undefined)
      ?.name,
    grpc: await new Promise<unknown>((resolve, reject) =>
      grpcClient.makeUnaryRequest(
        executePath,
        (m: ExecuteRequest) => Buffer.from(toBinary(ExecuteRequestSchema, m)),
        (b: Buffer) => fromBinary(ExecuteResponseSchema, b),
        request(42),
        (err, res) => (err ? reject(err) : resolve(res?.rows[0]?.values[1]?.kind.value)),
      ),
    ),
  };
  if (Object.values(names).some((name) => name !== "item 42")) {
    throw new Error(`sanity check failed: ${JSON.stringify(names)}`);
  }

  // V8 tiers code up by how often it runs: a gateway call costs several
  // times its settled CPU in the first second. Each path warms up first.
  for (const target of targets) {
    const { result } = await target.load(topCallers, warmupSeconds);
    log(`warmed up ${target.name}: ${Math.round(result.rate)} q/s`);
  }

  const samples = new Map<string, Sample[]>();
  for (let run = 1; run <= runs; run++) {
    for (const callers of callersList) {
      for (const target of targets) {
        if (!target.callers.includes(callers)) continue;
        const server = target.serverPid ?? gateway.pid;
        const before = [processCpuMicros(server), processCpuMicros(db.pid)];
        const { result, clientCpuMicros } = await target.load(callers, seconds);
        const after = [processCpuMicros(server), processCpuMicros(db.pid)];
        const sample: Sample = {
          rate: result.rate,
          p50: percentile(result.latenciesMs, 50),
          p99: percentile(result.latenciesMs, 99),
          clientCpu: clientCpuMicros / result.calls,
          gatewayCpu: ((after[0] ?? 0) - (before[0] ?? 0)) / result.calls,
          mysqlCpu: ((after[1] ?? 0) - (before[1] ?? 0)) / result.calls,
        };
        log(
          `${target.name}, ${callers} caller(s), run ${run}/${runs}: ${Math.round(sample.rate)} q/s, ` +
            `p50 ${sample.p50.toFixed(3)} ms, p99 ${sample.p99.toFixed(3)} ms, ` +
            `gateway ${Math.round(sample.gatewayCpu)} us/call`,
        );
        const key = `${target.id}|${callers}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
      }
    }
  }

  const [directTarget, ...gatewayTargets] = targets as [Target, ...Target[]];
  const of = (target: Target, callers: number) => samples.get(`${target.id}|${callers}`) ?? [];
  writeReport("point-query.md", report(of, directTarget, gatewayTargets, serverVersion));
  writeFigures("point-query.json", figures(of, directTarget, gatewayTargets));
}

/** Per-run ratios of a gateway path's q/s to direct's in the same run. */
function ratios(gateways: readonly Sample[], directs: readonly Sample[]): number[] {
  return gateways.map((g, i) => g.rate / (directs[i]?.rate ?? Number.NaN));
}

function figures(
  of: (target: Target, callers: number) => Sample[],
  directTarget: Target,
  gatewayTargets: readonly Target[],
): Figure[] {
  const out: Figure[] = [];
  for (const target of gatewayTargets) {
    for (const callers of target.callers) {
      const directs = of(directTarget, callers);
      const gateways = of(target, callers);
      if (gateways.length === 0) continue;
      const name = target.name.replace(/^gateway, /, "");
      out.push({
        benchmark: "Point query",
        name: `${name}, ${callers} caller(s): q/s ratio to direct`,
        unit: "x",
        ...spread(ratios(gateways, directs)),
        ...(callers === 64 && target.id === "h2load" ? { goal: { op: ">=", value: 0.5 } } : {}),
      });
      if (callers === 1) {
        out.push({
          benchmark: "Point query",
          name: `${name}, 1 caller: p50 added to direct's`,
          unit: "ms",
          ...spread(gateways.map((g, i) => g.p50 - (directs[i]?.p50 ?? Number.NaN))),
          ...(target.id === "h2load" ? { goal: { op: "<", value: 0.2 } } : {}),
        });
      }
    }
  }
  return out;
}

function report(
  of: (target: Target, callers: number) => Sample[],
  directTarget: Target,
  gatewayTargets: readonly Target[],
  serverVersion: string,
): string {
  const rate = (n: number) => Math.round(n).toLocaleString("en-US");
  const ms = (n: number) => n.toFixed(3);
  const us = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-");
  const med = (list: Sample[], pick: (s: Sample) => number) => median(list.map(pick));

  const lines = [
    `## Point query (primary-key lookup), ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}; pool ${poolSize} both ways; ${rowCount} rows; ` +
      `warm-up ${warmupSeconds} s per path, then ${runs} run(s) of ${seconds} s per ` +
      "configuration, the paths alternating within each run; medians of the runs. " +
      "h2load keeps `callers` calls in flight over min(callers, 8) h2c connections " +
      "(HTTP/1.1: one connection per caller).",
    "",
    "| path | callers | q/s | q/s min-max | p50 ms | p99 ms | client CPU us/call | gateway CPU us/call | MariaDB CPU us/call |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const callers of callersList) {
    for (const target of [directTarget, ...gatewayTargets]) {
      const list = of(target, callers);
      if (list.length === 0) continue;
      const rates = list.map((s) => s.rate);
      const isGateway = target !== directTarget;
      lines.push(
        `| ${target.name} | ${callers} | ${rate(median(rates))} | ` +
          `${rate(Math.min(...rates))}-${rate(Math.max(...rates))} | ` +
          `${ms(med(list, (s) => s.p50))} | ${ms(med(list, (s) => s.p99))} | ` +
          `${us(med(list, (s) => s.clientCpu))} | ` +
          `${isGateway ? us(med(list, (s) => s.gatewayCpu)) : "-"} | ` +
          `${us(med(list, (s) => s.mysqlCpu))} |`,
      );
    }
  }
  lines.push(
    "",
    "| path | callers | path/direct q/s (median of per-run ratios) | range | added p50 (path - direct) | goal |",
    "|---|---:|---:|---:|---:|---|",
  );
  for (const target of gatewayTargets)
    for (const callers of target.callers) {
      const directs = of(directTarget, callers);
      const gateways = of(target, callers);
      if (gateways.length === 0) continue;
      const r = ratios(gateways, directs);
      const added = med(gateways, (s) => s.p50) - med(directs, (s) => s.p50);
      const goal =
        target.id !== "h2load"
          ? ""
          : callers === 64
            ? `ratio >= 0.5: ${median(r) >= 0.5 ? "met" : "not met"}`
            : callers === 1
              ? `added p50 < 0.2 ms: ${added < 0.2 ? "met" : "not met"}`
              : "";
      lines.push(
        `| ${target.name} | ${callers} | ${median(r).toFixed(3)} | ` +
          `${Math.min(...r).toFixed(3)}-${Math.max(...r).toFixed(3)} | ` +
          `${added >= 0 ? "+" : ""}${ms(added)} ms | ${goal} |`,
      );
    }
  lines.push(
    "",
    "CPU per call: each process's utime+stime from /proc over the run (h2load's from its " +
      "exit accounting); client = the load generator, which shares the two cores with the " +
      "gateway and MariaDB.",
    "",
  );
  return lines.join("\n");
}

await runBenchmark(main);
