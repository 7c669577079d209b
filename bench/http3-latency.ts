/**
 * Latency of a small unary Execute (`SELECT 1`, Connect JSON, ~20-byte body)
 * through the optional HTTP/3 front proxy, against the other ways in, in one
 * run on one private MariaDB, alternating the paths:
 *
 *   h3  -> Caddy -> h2c   Chromium (Debian's, forced onto QUIC), fetch in the page
 *   h2  -> Caddy -> h2c   Chromium without forcing (HTTP/2 over TLS), same page code
 *   h2  -> Caddy -> h2c   node:http2 with TLS
 *   h2c direct            node:http2, no proxy
 *   mysql2 direct         `SELECT 1` on one connection (the baseline)
 *
 * Each path runs `BENCH_REQUESTS` calls back to back on one reused connection
 * (sequential), then the same number with `BENCH_CONCURRENCY` calls in flight
 * on that connection; the table shows each figure's median over the runs and
 * the range. A manual benchmark (not a test), on compiled JS:
 *
 *   npm run -s build && node dist/bench/http3-latency.js
 *   bench/http3-netns.sh      # the same inside a network namespace with loss and delay
 *
 * Settings (environment): BENCH_REQUESTS (1000), BENCH_CONCURRENCY (10),
 * BENCH_RUNS (3), BENCH_WARMUP (200 calls per path), BENCH_CONDITIONS (a
 * label for the report, e.g. "1% loss, 40 ms RTT"), BENCH_REPORT
 * (http3-latency.md, in bench/out/). bench/http3-netns.sh sets
 * BENCH_CADDY_PORT and BENCH_DIRECT_PORT, the two ports its packet filter
 * impairs: the direct path then gets a gateway of its own on that port, so that
 * the hop from Caddy to its gateway stays unimpaired as it would be in
 * production, where the two share a host.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";
import type { Page } from "playwright-core";
import {
  launchQuicBrowser,
  openQuicPage,
  quicCertificate,
  startCaddy,
  type TestCaddy,
} from "../test/support/caddy.js";
import { startGatewayProcess } from "./support/gateway-process.js";
import {
  log,
  machineLine,
  onCleanup,
  runBenchmark,
  setting,
  startBenchDatabase,
  writeReport,
} from "./support/harness.js";
import { median, percentile } from "./support/load.js";

const requests = Math.round(setting("BENCH_REQUESTS", 1000));
const concurrency = Math.round(setting("BENCH_CONCURRENCY", 10));
const runs = Math.round(setting("BENCH_RUNS", 3));
const warmup = Math.round(setting("BENCH_WARMUP", 200, 0));
const caddyPort = process.env.BENCH_CADDY_PORT ? setting("BENCH_CADDY_PORT", 0) : undefined;
const directPort = process.env.BENCH_DIRECT_PORT ? setting("BENCH_DIRECT_PORT", 0) : undefined;
const conditions = process.env.BENCH_CONDITIONS || "loopback";
const reportName = process.env.BENCH_REPORT || "http3-latency.md";

const executePath = "/sqlgate.v1.DatabaseService/Execute";
const body = JSON.stringify({ sql: "SELECT 1" });
const cleanup = { after: (fn: () => unknown) => onCleanup(async () => void (await fn())) };

/** Runs `count` calls of `one` with `inFlight` at a time; each call's latency in ms. */
async function measure(
  one: () => Promise<void>,
  count: number,
  inFlight: number,
): Promise<number[]> {
  const latencies: number[] = [];
  let started = 0;
  const loop = async () => {
    while (started < count) {
      started++;
      const t0 = performance.now();
      await one();
      const ms = performance.now() - t0;
      latencies.push(ms);
    }
  };
  await Promise.all(Array.from({ length: inFlight }, loop));
  return latencies;
}

interface Path {
  readonly name: string;
  /** The protocol the path really used, checked before it is measured. */
  readonly protocol: () => Promise<string>;
  /** Latencies (ms) of `count` calls with `inFlight` at a time. */
  readonly run: (count: number, inFlight: number) => Promise<number[]>;
}

/** A path whose client is fetch in a Chromium page: the loop runs in the page. */
function browserPath(name: string, page: Page): Path {
  return {
    name,
    protocol: () =>
      page.evaluate(async (route) => {
        performance.clearResourceTimings();
        await (
          await fetch(route, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: '{"sql":"SELECT 1"}',
          })
        ).text();
        const entry = performance.getEntriesByType("resource")[0] as PerformanceResourceTiming;
        performance.clearResourceTimings();
        return entry.nextHopProtocol;
      }, executePath),
    run: (count, inFlight) =>
      page.evaluate(
        async ({ route, body, count, inFlight }) => {
          // Resource timing entries would pile up (and the buffer fills).
          performance.setResourceTimingBufferSize(0);
          const latencies: number[] = [];
          let started = 0;
          await Promise.all(
            Array.from({ length: inFlight }, async () => {
              while (started < count) {
                started++;
                const t0 = performance.now();
                const response = await fetch(route, {
                  method: "POST",
                  headers: { "content-type": "application/json" },
                  body,
                });
                const text = await response.text();
                if (!response.ok) throw new Error(`HTTP ${response.status}: ${text}`);
                latencies.push(performance.now() - t0);
              }
            }),
          );
          performance.setResourceTimingBufferSize(250);
          return latencies;
        },
        { route: executePath, body, count, inFlight },
      ),
  };
}

/** A path whose client is one node:http2 session (h2c, or h2 over TLS trusting `ca`). */
function nodePath(name: string, baseUrl: string, ca?: Buffer): Path {
  const session = http2.connect(baseUrl, ca === undefined ? {} : { ca });
  session.on("error", (err) => log(`${name}: ${err.message}`));
  onCleanup(async () => void session.close());
  const headers = {
    ":method": "POST",
    ":path": executePath,
    "content-type": "application/json",
  };
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const stream = session.request(headers);
      let status = 0;
      stream.on("response", (h) => {
        status = Number(h[":status"]);
      });
      stream.on("data", () => {});
      stream.on("end", () => (status === 200 ? resolve() : reject(new Error(`HTTP ${status}`))));
      stream.on("error", reject);
      stream.end(body);
    });
  return {
    name,
    protocol: async () => {
      await one();
      return baseUrl.startsWith("https:") ? "h2" : "h2c";
    },
    run: (count, inFlight) => measure(one, count, inFlight),
  };
}

/** The gateway (`dist/server/main.js`) on a given port, for a packet filter set up before. */
async function gatewayAt(port: number, mysqlUrl: string, dataDir: string): Promise<string> {
  mkdirSync(dataDir, { recursive: true });
  const mainJs = fileURLToPath(new URL("../server/main.js", import.meta.url));
  const child: ChildProcess = spawn(process.execPath, [mainJs], {
    env: {
      ...process.env,
      SQLGATE_MYSQL_URL: mysqlUrl,
      SQLGATE_LISTEN: `127.0.0.1:${port}`,
      SQLGATE_LOG_LEVEL: "warn",
      SQLGATE_DATA_DIR: dataDir,
    },
    stdio: ["ignore", 2, 2],
  });
  onCleanup(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: "127.0.0.1", port }, () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return `http://127.0.0.1:${port}`;
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`the gateway on port ${port} did not start`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Figures {
  readonly p50: number;
  readonly p99: number;
}

function figures(latencies: number[]): Figures {
  const sorted = Float64Array.from(latencies).sort();
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
}

/** "median (min-max)" of one figure over the runs. */
function spread(values: number[]): string {
  const f = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(1));
  return `${f(median(values))} (${f(Math.min(...values))}-${f(Math.max(...values))})`;
}

async function main(): Promise<void> {
  const { db, dataDir, serverVersion } = await startBenchDatabase();
  const upstream = await startGatewayProcess({ mysqlUrl: db.url, poolSize: 8, dataDir });
  onCleanup(() => upstream.stop());
  const direct =
    directPort === undefined
      ? upstream.baseUrl
      : await gatewayAt(directPort, db.url, path.join(dataDir, "direct-gateway"));
  const certificate = await quicCertificate(cleanup);
  const caddy: TestCaddy = await startCaddy(cleanup, {
    upstreamPort: Number(new URL(upstream.baseUrl).port),
    certificate,
    ...(caddyPort === undefined ? {} : { port: caddyPort }),
  });
  log(`caddy on ${caddy.origin} (pid ${caddy.pid}); gateway behind it ${upstream.baseUrl}`);

  const quic = await launchQuicBrowser(cleanup, { caddy, certificate });
  const tcp = await launchQuicBrowser(cleanup, { caddy, certificate, forceQuic: false });
  const baseline = await mysql.createConnection({ socketPath: db.socketPath, user: "root" });
  onCleanup(() => baseline.end());
  const paths: Path[] = [
    browserPath("h3 -> Caddy -> h2c (Chromium)", await openQuicPage(quic, caddy)),
    browserPath("h2 TLS -> Caddy -> h2c (Chromium)", await openQuicPage(tcp, caddy)),
    nodePath("h2 TLS -> Caddy -> h2c (node:http2)", caddy.origin, certificate.cert),
    nodePath("h2c direct (node:http2)", direct),
    {
      name: "mysql2 direct, SELECT 1 (baseline)",
      protocol: async () => "unix socket",
      run: (count) =>
        measure(
          async () => {
            await baseline.query("SELECT 1");
          },
          count,
          1,
        ),
    },
  ];

  const expected = ["h3", "h2", "h2", "h2c", "unix socket"];
  for (const [i, target] of paths.entries()) {
    const protocol = await target.protocol();
    if (protocol !== expected[i]) throw new Error(`${target.name}: used ${protocol}`);
    log(`warming up ${target.name}`);
    await target.run(warmup, concurrency);
  }

  const results = paths.map(() => ({ sequential: [] as Figures[], concurrent: [] as Figures[] }));
  for (let r = 1; r <= runs; r++) {
    for (const [i, target] of paths.entries()) {
      const sequential = figures(await target.run(requests, 1));
      const concurrent =
        i === paths.length - 1 ? undefined : figures(await target.run(requests, concurrency));
      results[i]?.sequential.push(sequential);
      if (concurrent) results[i]?.concurrent.push(concurrent);
      log(
        `run ${r}/${runs} ${target.name}: sequential ${sequential.p50.toFixed(2)} / ${sequential.p99.toFixed(2)} ms` +
          (concurrent
            ? `, ${concurrency} in flight ${concurrent.p50.toFixed(2)} / ${concurrent.p99.toFixed(2)} ms`
            : ""),
      );
    }
  }

  const lines = [
    `## Execute latency through the HTTP/3 front proxy (${conditions})`,
    "",
    machineLine(serverVersion),
    "",
    `Caddy 2.6.2 (Debian), Chromium ${quic.version()}; ${requests} calls per path and run, ` +
      `${runs} runs; median of the runs (range), in ms.`,
    "",
    `| path | sequential p50 | sequential p99 | ${concurrency} in flight p50 | ${concurrency} in flight p99 |`,
    "|---|---|---|---|---|",
  ];
  for (const [i, target] of paths.entries()) {
    const r = results[i];
    if (r === undefined) continue;
    const col = (list: Figures[], key: keyof Figures) =>
      list.length === 0 ? "-" : spread(list.map((f) => f[key]));
    lines.push(
      `| ${target.name} | ${col(r.sequential, "p50")} | ${col(r.sequential, "p99")} | ${col(r.concurrent, "p50")} | ${col(r.concurrent, "p99")} |`,
    );
  }
  writeReport(reportName, `${lines.join("\n")}\n`);
}

await runBenchmark(main);
