/**
 * Point-query benchmark: primary-key lookups through the gateway (Connect
 * binary over h2c, and PlanetScale's API through the real
 * @planetscale/database driver over Node's fetch; the gateway in its own
 * process) against direct mysql2 with the same pool size, in one run on one
 * private MariaDB, alternating the paths.
 *
 *   npm run bench                          # 3 runs of 5 s per configuration
 *   BENCH_SECONDS=2 BENCH_RUNS=1 npm run bench
 *
 * Settings (environment): BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CALLERS
 * (1,64), BENCH_POOL_SIZE (16, both ways), BENCH_ROWS (10000),
 * BENCH_WARMUP_CALLS (20000 per path), BENCH_WARMUP_SECONDS (30, the warm-up's
 * cap), BENCH_GATEWAY_NODE_ARGS (extra node options for the gateway, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof"). Prints a markdown table and writes it
 * to bench/out/point-query.md.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Client as PlanetScaleClient } from "@planetscale/database";
import mysql from "mysql2/promise";
import {
  DatabaseService,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
} from "../gen/sqlgate/v1/database_pb.js";
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
import { createLeanUnaryClient } from "./support/lean-h2-client.js";
import { type LoadResult, median, percentile, runLoad } from "./support/load.js";
import { ownCpuMicros, processCpuMicros } from "./support/proc-cpu.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const warmupCalls = Math.round(setting("BENCH_WARMUP_CALLS", 20_000, 0));
const warmupSeconds = setting("BENCH_WARMUP_SECONDS", 30, 0);
const poolSize = Math.round(setting("BENCH_POOL_SIZE", 16));
const rowCount = Math.round(setting("BENCH_ROWS", 10_000));
const callersList = (process.env.BENCH_CALLERS || "1,64").split(",").map(Number);
const gatewayNodeArgs = (process.env.BENCH_GATEWAY_NODE_ARGS ?? "").split(" ").filter(Boolean);
const targetFilter = (process.env.BENCH_TARGETS ?? "").split(",").filter(Boolean);
const sql = "SELECT id, name, price, created FROM bench_items WHERE id = ?";
const randomId = () => 1 + Math.floor(Math.random() * rowCount);

interface Target {
  readonly name: string;
  readonly op: () => Promise<unknown>;
}

interface Sample {
  readonly rate: number;
  readonly p50: number;
  readonly p99: number;
  /** CPU microseconds per call: this (client) process, the gateway, MariaDB. */
  readonly clientCpu: number;
  readonly gatewayCpu: number;
  readonly mysqlCpu: number;
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

  const lean = createLeanUnaryClient(gateway.baseUrl, 1);
  const executePath = `/${DatabaseService.typeName}/${DatabaseService.method.execute.name}`;
  const leanExecute = async (id: number) =>
    fromBinary(
      ExecuteResponseSchema,
      await lean.call(
        0,
        executePath,
        toBinary(
          ExecuteRequestSchema,
          create(ExecuteRequestSchema, {
            sql,
            typedParams: [{ kind: { case: "int64Value", value: BigInt(id) } }],
          }),
        ),
      ),
    );

  const allTargets: (Target & { readonly id: string })[] = [
    { id: "direct", name: "direct mysql2", op: () => direct.execute(sql, [randomId()]) },
    {
      id: "connect",
      name: "gateway, Connect binary h2c",
      op: () =>
        client.execute({
          sql,
          typedParams: [{ kind: { case: "int64Value", value: BigInt(randomId()) } }],
        }),
    },
    {
      id: "lean",
      name: "gateway, Connect binary h2c (lean h2 client)",
      op: () => leanExecute(randomId()),
    },
    {
      id: "planetscale",
      name: "PlanetScale API, @planetscale/database (fetch, HTTP/1.1)",
      op: () => planetscale.execute(sql, [randomId()]),
    },
  ];
  const targets = allTargets.filter(
    (t) => t.id === "direct" || targetFilter.length === 0 || targetFilter.includes(t.id),
  );

  // Both paths must return the same row before anything is timed.
  const [check] = await direct.execute<mysql.RowDataPacket[]>(sql, [42]);
  const viaGateway = await client.execute({
    sql,
    typedParams: [{ kind: { case: "int64Value", value: 42n } }],
  });
  const gatewayName = viaGateway.rows[0]?.values[1]?.kind.value;
  const viaPlanetScale = await planetscale.execute(sql, [42]);
  const planetscaleName = (viaPlanetScale.rows[0] as { name?: string } | undefined)?.name;
  if (check[0]?.name !== "item 42" || gatewayName !== "item 42" || planetscaleName !== "item 42") {
    throw new Error(
      `sanity check failed: direct ${check[0]?.name}, gateway ${String(gatewayName)}, PlanetScale API ${String(planetscaleName)}`,
    );
  }

  // V8 tiers code up by how often it runs: on this kind of machine the
  // Connect paths settle only after ~10,000 calls (in the first second a
  // gateway call costs ~5x its settled CPU). So each path warms up, in 1 s
  // slices, until it has made BENCH_WARMUP_CALLS calls or the time cap passes.
  for (const target of targets) {
    const rates: number[] = [];
    let calls = 0;
    const until = performance.now() + warmupSeconds * 1000;
    while (calls < warmupCalls && performance.now() < until) {
      const result = await runLoad(target.op, Math.max(...callersList), 1);
      calls += result.calls;
      rates.push(Math.round(result.rate));
    }
    log(`warmed up ${target.name} with ${calls} calls: ${rates.join(", ")} q/s`);
  }

  const samples = new Map<string, Sample[]>();
  const key = (target: Target, callers: number) => `${target.name}|${callers}`;
  for (const callers of callersList) {
    for (let run = 1; run <= runs; run++) {
      for (const target of targets) {
        const before = [ownCpuMicros(), processCpuMicros(gateway.pid), processCpuMicros(db.pid)];
        const result: LoadResult = await runLoad(target.op, callers, seconds);
        const after = [ownCpuMicros(), processCpuMicros(gateway.pid), processCpuMicros(db.pid)];
        const perCall = after.map((v, i) => (v - (before[i] ?? 0)) / result.calls);
        const sample: Sample = {
          rate: result.rate,
          p50: percentile(result.latenciesMs, 50),
          p99: percentile(result.latenciesMs, 99),
          clientCpu: perCall[0] ?? Number.NaN,
          gatewayCpu: perCall[1] ?? Number.NaN,
          mysqlCpu: perCall[2] ?? Number.NaN,
        };
        log(
          `${target.name}, ${callers} caller(s), run ${run}/${runs}: ${Math.round(sample.rate)} q/s, ` +
            `p50 ${sample.p50.toFixed(3)} ms, p99 ${sample.p99.toFixed(3)} ms`,
        );
        const list = samples.get(key(target, callers)) ?? [];
        list.push(sample);
        samples.set(key(target, callers), list);
      }
    }
  }

  const [directTarget, ...gatewayTargets] = targets as readonly Target[] as [Target, ...Target[]];
  writeReport("point-query.md", report(samples, key, directTarget, gatewayTargets, serverVersion));
}

function report(
  samples: Map<string, Sample[]>,
  key: (target: Target, callers: number) => string,
  directTarget: Target,
  gatewayTargets: readonly Target[],
  serverVersion: string,
): string {
  const rate = (n: number) => Math.round(n).toLocaleString("en-US");
  const ms = (n: number) => n.toFixed(3);
  const us = (n: number) => (Number.isFinite(n) ? String(Math.round(n)) : "-");
  const of = (target: Target, callers: number) => samples.get(key(target, callers)) ?? [];
  const med = (list: Sample[], pick: (s: Sample) => number) => median(list.map(pick));

  const lines = [
    `## Point query (primary-key lookup), ${new Date().toISOString()}`,
    "",
    `${machineLine(serverVersion)}; pool ${poolSize} both ways; ${rowCount} rows; ` +
      `warm-up ${warmupCalls} calls (at most ${warmupSeconds} s) per path, then ${runs} run(s) ` +
      `of ${seconds} s per configuration, direct and gateway alternating; medians of the runs.`,
    "",
    "| path | callers | q/s | q/s min-max | p50 ms | p99 ms | client CPU us/call | gateway CPU us/call | MariaDB CPU us/call |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const callers of callersList) {
    for (const target of [directTarget, ...gatewayTargets]) {
      const list = of(target, callers);
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
    "| path | callers | path/direct q/s (median of pairs) | pair range | added p50 (path - direct) | goal |",
    "|---|---:|---:|---:|---:|---|",
  );
  for (const gatewayTarget of gatewayTargets)
    for (const callers of callersList) {
      const directs = of(directTarget, callers);
      const gateways = of(gatewayTarget, callers);
      const ratios = gateways.map((g, i) => g.rate / (directs[i]?.rate ?? Number.NaN));
      const added = med(gateways, (s) => s.p50) - med(directs, (s) => s.p50);
      const goal =
        callers === 64
          ? `ratio >= 0.5: ${median(ratios) >= 0.5 ? "met" : "not met"}`
          : callers === 1
            ? `added p50 < 0.2 ms: ${added < 0.2 ? "met" : "not met"}`
            : "";
      lines.push(
        `| ${gatewayTarget.name} | ${callers} | ${median(ratios).toFixed(3)} | ` +
          `${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)} | ` +
          `${added >= 0 ? "+" : ""}${ms(added)} ms | ${goal} |`,
      );
    }
  lines.push(
    "",
    ...gatewayTargets.map(
      (gatewayTarget) =>
        `Gateway CPU per call, ${gatewayTarget.name} (its process's utime+stime from /proc, steadier than the ratios): ` +
        callersList
          .map((c) => `${us(med(of(gatewayTarget, c), (s) => s.gatewayCpu))} us at ${c} caller(s)`)
          .join(", ") +
        ".",
    ),
    "",
  );
  return lines.join("\n");
}

await runBenchmark(main);
