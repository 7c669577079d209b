/**
 * What an operator sees: /metrics after real calls (calls by method and code,
 * latency histograms, MySQL errors by errno, pools, open sessions) and the
 * call log lines (method, code, duration, rows, request id; slow calls as
 * warnings), from the real process.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Code, ConnectError, createClient, createContextValues } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { connect } from "@planetscale/database";
import { pino } from "pino";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { createCallObserver } from "../server/observability/call-observer.js";
import { createMetrics } from "../server/observability/metrics.js";
import { startGatewayChild } from "./support/gateway-process.js";
import { createTestDatabase } from "./support/mysql.js";

/** The value of one sample line of a Prometheus text page, or undefined. */
function sample(
  page: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of page.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (wanted.every((w) => line.includes(w))) return Number(line.split(" ").pop());
  }
  return undefined;
}

test("metrics and call logs after real calls", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGatewayChild(t, {
    SQLGATE_MYSQL_URL: db.url,
    SQLGATE_LOG_LEVEL: "debug",
    SQLGATE_SLOW_CALL_MS: "200",
  });
  const client = createClient(
    DatabaseService,
    createConnectTransport({
      baseUrl: gateway.baseUrl,
      httpVersion: "1.1",
      interceptors: [
        (next) => (req) => {
          req.header.set("x-request-id", "req-obs-1");
          return next(req);
        },
      ],
    }),
  );
  await client.execute({ sql: "SELECT 1 UNION SELECT 2" });
  await client.execute({ sql: "SELECT SLEEP(0.3)" });
  const bad = await client.execute({ sql: "SELEC 1" }).then(
    () => assert.fail("bad SQL ran"),
    (e: unknown) => ConnectError.from(e),
  );
  assert.equal(bad.code, Code.InvalidArgument);
  await connect({ url: gateway.baseUrl.replace("http://", "http://u:p@") })
    .execute("SELECT * FROM missing_table")
    .catch(() => {});
  const { session } = await client.beginTransaction({});

  const page = await (await fetch(`${gateway.baseUrl}/metrics`)).text();
  const execute = "sqlgate.v1.DatabaseService/Execute";
  assert.equal(sample(page, "sqlgate_calls_total", { method: execute, code: "ok" }), 2);
  assert.equal(
    sample(page, "sqlgate_calls_total", { method: execute, code: "invalid_argument" }),
    1,
  );
  assert.equal(
    sample(page, "sqlgate_calls_total", {
      method: "psdb.v1alpha1.Database/Execute",
      code: "not_found",
    }),
    1,
  );
  assert.equal(sample(page, "sqlgate_call_duration_seconds_count", { method: execute }), 3);
  assert.equal(
    // Under SELECT SLEEP(0.3), with room for a loaded machine.
    sample(page, "sqlgate_call_duration_seconds_bucket", { method: execute, le: "0.25" }),
    2,
  );
  assert.equal(sample(page, "sqlgate_mysql_errors_total", { errno: "1064" }), 1);
  assert.equal(sample(page, "sqlgate_mysql_errors_total", { errno: "1146" }), 1);
  assert.equal(sample(page, "sqlgate_open_sessions"), 1);
  assert.ok((sample(page, "sqlgate_pool_connections_open", { pool: "statements" }) ?? 0) >= 1);
  assert.equal(sample(page, "sqlgate_pool_connections_in_use", { pool: "transactions" }), 1);
  await client.rollbackTransaction({ session });

  const lines = gateway
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const calls = lines.filter((l) => l.method === execute);
  const first = calls.find((l) => l.code === "ok" && l.rows === 2);
  assert.ok(first, "a debug line for the first call");
  assert.equal(first.requestId, "req-obs-1");
  assert.equal(first.level, 20);
  assert.equal(typeof first.ms, "number");
  const slow = calls.find((l) => l.msg === "slow call");
  assert.equal(slow?.level, 40);
  assert.ok((slow?.ms as number) >= 300);
  const failed = calls.find((l) => l.code === "invalid_argument");
  assert.equal(failed?.errno, 1064);
  for (const line of lines) assert.ok(!("sql" in line), "no SQL text in logs");
});

test("an internal failure is logged as an error with its cause and stack", async () => {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const { calls } = createMetrics({
    ingest: { stats: () => ({}) as never },
    pools: () => [],
    sessions: { size: 0 },
    replicas: () => [],
    changeSink: () => undefined,
  });
  const observe = createCallObserver({ logger, metrics: calls, slowCallMs: 1000 });
  const cause = Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
  const failing = observe(async () => {
    throw new ConnectError(
      "the statement's connection broke",
      Code.Internal,
      undefined,
      undefined,
      cause,
    );
  });
  const req = {
    service: DatabaseService,
    method: DatabaseService.method.execute,
    header: new Headers({ "x-request-id": "req-internal" }),
    contextValues: createContextValues(),
  } as unknown as Parameters<typeof failing>[0];
  await assert.rejects(failing(req), /connection broke/);
  const [line] = lines;
  assert.equal(line?.level, 50);
  assert.equal(line?.code, "internal");
  assert.equal(line?.requestId, "req-internal");
  assert.match(String((line?.err as { stack?: string })?.stack), /connection broke/);
  assert.match(JSON.stringify(line?.cause), /socket hang up/);
});
