/**
 * Forwarding benchmark: statements inside one transaction, sent to the
 * replica that holds it and, through the other replica, forwarded to it.
 * Two gateway processes share one private MariaDB and a token secret and
 * list each other in SQLGATE_PEERS; each path runs sequential `SELECT 1`s in
 * alternating runs, and the report gives medians and what the hop adds.
 *
 *   BENCH_ONLY=forwarding npm run bench
 *
 * Settings: BENCH_SECONDS (5), BENCH_RUNS (3), BENCH_CALLERS (1: calls of one
 * transaction run one at a time).
 */
import { freePort, startGatewayProcess } from "./support/gateway-process.js";
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
import { median, percentile, runLoad } from "./support/load.js";

const seconds = setting("BENCH_SECONDS", 5);
const runs = Math.round(setting("BENCH_RUNS", 3));
const secret = "a-bench-token-secret-of-32-characters-or-more";

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const ports = [await freePort(), await freePort()];
  const peers = ports.map((port) => `http://127.0.0.1:${port}`).join(",");
  const replicas = [];
  for (const [i, port] of ports.entries()) {
    log(`starting replica ${i + 1} on port ${port}`);
    const gateway = await startGatewayProcess({
      mysqlUrl: db.url,
      poolSize: 4,
      dataDir: `${dataDir}/replica-${i + 1}`,
      port,
      env: { SQLGATE_TOKEN_SECRET: secret, SQLGATE_PEERS: peers },
    });
    onCleanup(() => gateway.stop());
    replicas.push(gateway);
  }
  const [owner, other] = replicas.map((r) => gatewayClient(r.baseUrl));
  if (owner === undefined || other === undefined) throw new Error("two replicas");
  const { session } = await owner.beginTransaction({});
  const viaOwner = await owner.execute({ session, sql: "SELECT CONNECTION_ID()" });
  const viaOther = await other.execute({ session, sql: "SELECT CONNECTION_ID()" });
  if (viaOwner.rows[0]?.values[0]?.kind.value !== viaOther.rows[0]?.values[0]?.kind.value) {
    throw new Error("the forwarded statement did not run on the owner's connection");
  }
  const paths = [
    { name: "on the owner", client: owner },
    { name: "forwarded by the other replica", client: other },
  ];
  for (const path of paths) {
    await runLoad(() => path.client.execute({ session, sql: "SELECT 1" }), 1, 2);
  }
  const p50s = new Map<string, number[]>();
  const p99s = new Map<string, number[]>();
  for (let run = 1; run <= runs; run++) {
    for (const path of paths) {
      const result = await runLoad(
        () => path.client.execute({ session, sql: "SELECT 1" }),
        1,
        seconds,
      );
      const p50 = percentile(result.latenciesMs, 50);
      const p99 = percentile(result.latenciesMs, 99);
      log(
        `${path.name}, run ${run}/${runs}: ${Math.round(result.rate)} calls/s, p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms`,
      );
      p50s.set(path.name, [...(p50s.get(path.name) ?? []), p50]);
      p99s.set(path.name, [...(p99s.get(path.name) ?? []), p99]);
    }
  }
  await owner.rollbackTransaction({ session });
  const ms = (n: number) => n.toFixed(3);
  const [onOwner, forwarded] = paths.map((p) => median(p50s.get(p.name) ?? []));
  const added = (forwarded ?? Number.NaN) - (onOwner ?? Number.NaN);
  writeReport(
    "forwarding.md",
    [
      `## Forwarding a transaction's statements to its owner, ${new Date().toISOString()}`,
      "",
      `${machineLine(serverVersion)}; one transaction, sequential SELECT 1, ${runs} run(s) of ${seconds} s per path, alternating; medians of the runs.`,
      "",
      "| path | p50 ms | p99 ms |",
      "|---|---:|---:|",
      ...paths.map(
        (p) =>
          `| ${p.name} | ${ms(median(p50s.get(p.name) ?? []))} | ${ms(median(p99s.get(p.name) ?? []))} |`,
      ),
      "",
      `The hop adds ${ms(added)} ms at p50 (goal: under 0.3 ms on loopback: ${added < 0.3 ? "met" : "not met"}).`,
      "",
    ].join("\n"),
  );
}

await runBenchmark(main);
