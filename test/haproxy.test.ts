/**
 * Several gateway replicas behind HAProxy (deploy/haproxy/haproxy.cfg run by
 * scripts/haproxy.sh): three real gateway processes on one MariaDB database,
 * HAProxy 2.6 in front balancing every call on its own over HTTP/2. Which
 * replica served a call is read from the `sqlgate-backend` response header
 * HAProxy adds, and from its access log.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import {
  DatabaseService,
  type ExecuteRequest,
  ExecuteRequestSchema,
  ExecuteResponseSchema,
} from "../gen/sqlgate/v1/database_pb.js";
import { createTestDatabase, runningStatements, waitUntilGone } from "./support/mysql.js";
import { type Replica, restartReplica, startHaproxy, startReplicas } from "./support/replicas.js";

const run = promisify(execFile);
const executePath = "/sqlgate.v1.DatabaseService/Execute";

/** Three replicas (g1, g2, g3) on one test database, HAProxy in front. */
async function threeBehindHaproxy(
  t: Parameters<typeof createTestDatabase>[0],
  env: Record<string, string> = {},
) {
  const db = await createTestDatabase(t);
  const replicas = await startReplicas(t, { mysqlUrl: db.url, count: 3, env });
  const haproxy = await startHaproxy(t, replicas);
  return { db, replicas, haproxy };
}

/** Runs `calls` Executes one after another; counts the `sqlgate-backend` of each answer. */
async function servedBy(
  transport: Transport,
  calls: number,
  headers: Record<string, string> = {},
): Promise<Map<string, number>> {
  const client = createClient(DatabaseService, transport);
  const counts = new Map<string, number>();
  for (let i = 0; i < calls; i++) {
    let backend = "(none)";
    const res = await client.execute(
      { sql: `SELECT ${i} AS n` },
      { headers, onHeader: (h) => (backend = h.get("sqlgate-backend") ?? "(none)") },
    );
    assert.equal(res.rows[0]?.values[0]?.kind.value, BigInt(i));
    counts.set(backend, (counts.get(backend) ?? 0) + 1);
  }
  return counts;
}

/** Access-log lines of Execute calls: [client ip:port, backend/server, "HTTP/2.0" or "HTTP/1.1"]. */
function executeLog(output: string): [string, string, string][] {
  return (
    output
      .split("\n")
      // HTTP/2 requests are logged with their absolute URI (http://host:port/path).
      .filter((line) => new RegExp(`"POST \\S*${executePath} HTTP`).test(line))
      .map((line) => {
        // 127.0.0.1:50248 [30/Nov/2026:22:29:34.709] sqlgate gateways/g1 0/0/0/3/4 200 ...
        const [client = "", , , backend = ""] = line.split(" ");
        const version = / (HTTP\/[\d.]+)"/.exec(line)?.[1] ?? "";
        return [client, backend, version];
      })
  );
}

/** Polls until `predicate` holds (HAProxy logs a request just after its response). */
async function eventually<T>(read: () => T, predicate: (value: T) => boolean, ms = 3000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = read();
    if (predicate(value) || Date.now() > until) return value;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A GET over HTTP/1.1 with extra request headers: status and body. */
function getHttp1(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string; backend: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      let body = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        body += chunk;
      });
      res.once("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          body,
          backend: res.headers["sqlgate-backend"] as string | undefined,
        }),
      );
    });
    req.once("error", reject);
  });
}

/** What became of one raw HTTP/2 call. */
interface H2Outcome {
  /** The HTTP status; 0 when the stream was reset instead (`error` says how). */
  readonly status: number;
  readonly backend: string | undefined;
  readonly error: string | undefined;
  /** performance.now() at the start, and the call's duration. */
  readonly started: number;
  readonly ms: number;
}

/** A JSON Execute over an existing h2c session, never rejecting. */
function postH2(
  session: http2.ClientHttp2Session,
  headers: Record<string, string>,
): Promise<H2Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let status = 0;
    let backend: string | undefined;
    const done = (error?: unknown) =>
      resolve({
        status,
        backend,
        error: error === undefined ? undefined : String(error),
        started,
        ms: performance.now() - started,
      });
    const stream = session.request({
      ":method": "POST",
      ":path": executePath,
      "content-type": "application/json",
      ...headers,
    });
    stream.once("response", (h) => {
      status = Number(h[":status"]);
      backend = h["sqlgate-backend"] as string | undefined;
    });
    stream.resume();
    stream.once("end", () => done());
    stream.once("error", done);
    stream.end(JSON.stringify({ sql: "SELECT 1 AS n" }));
  });
}

/** One call of a `startLoad` run. */
interface LoadCall {
  /** performance.now() when it was sent. */
  readonly started: number;
  readonly backend: string | undefined;
  readonly error: string | undefined;
}

/**
 * Callers inserting rows through HAProxy until stopped: four over one HTTP/2
 * connection and one over HTTP/1.1, each with ids of its own. Inserts are
 * not idempotent: a call resent after it ran would fail on the primary key.
 */
function startLoad(baseUrl: string, table: string) {
  const h2 = createClient(DatabaseService, createConnectTransport({ baseUrl, httpVersion: "2" }));
  const h1 = createClient(DatabaseService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  let running = true;
  let inFlight = 0;
  const calls: LoadCall[] = [];
  const callers = [h2, h2, h2, h2, h1].map(async (client, caller) => {
    for (let n = 0; running; n++) {
      const started = performance.now();
      let backend: string | undefined;
      inFlight++;
      try {
        await client.execute(
          { sql: `INSERT INTO ${table} VALUES (${caller * 1_000_000 + n})` },
          { onHeader: (h) => (backend = h.get("sqlgate-backend") ?? undefined) },
        );
        calls.push({ started, backend, error: undefined });
      } catch (err) {
        calls.push({ started, backend, error: String(err) });
        // A failure can come without I/O: let timers (and the end of the load) run.
        await new Promise((resolve) => setTimeout(resolve, 5));
      } finally {
        inFlight--;
      }
    }
  });
  return {
    callers: callers.length,
    inFlight: () => inFlight,
    async stop(): Promise<LoadCall[]> {
      running = false;
      await Promise.all(callers);
      return calls;
    },
  };
}

/**
 * SDK callers reading through HAProxy until stopped: three over HTTP/2, one
 * over HTTP/1.1. A read whose call is lost is resent by the SDK itself.
 */
async function startSdkReads(baseUrl: string) {
  const { createClient: createSdk } = await import("../client/src/index.js");
  const h2 = createSdk({ url: baseUrl });
  const h1 = createSdk({ url: baseUrl, httpVersion: "1.1" });
  let running = true;
  let reads = 0;
  const failures: string[] = [];
  const callers = [h2, h2, h2, h1].map(async (sdk, caller) => {
    for (let n = 0; running; n++) {
      try {
        const { rows } = await sdk.execute("SELECT ? AS n", [caller * 1_000_000 + n]);
        assert.equal(rows[0]?.n, BigInt(caller * 1_000_000 + n));
        reads++;
      } catch (err) {
        failures.push(String(err));
        await sleep(5);
      }
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(callers);
      await Promise.all([h2.close(), h1.close()]);
      return { reads, failures };
    },
  };
}

/** Rows in `table`, read directly from MySQL. */
async function countRows(admin: { query(sql: string): Promise<unknown> }, table: string) {
  const [rows] = (await admin.query(`SELECT COUNT(*) AS n FROM ${table}`)) as [{ n: number }[]];
  return Number(rows[0]?.n);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("calls over one HTTP/2 connection, over HTTP/1.1 and over gRPC are spread over every replica", async (t) => {
  const { replicas, haproxy } = await threeBehindHaproxy(t);
  const names = replicas.map((r) => r.name).sort();

  // One connect-node HTTP/2 transport keeps one session: one TCP connection.
  const h2 = await servedBy(
    createConnectTransport({ baseUrl: haproxy.baseUrl, httpVersion: "2" }),
    30,
  );
  t.diagnostic(`30 calls over one HTTP/2 connection: ${JSON.stringify(Object.fromEntries(h2))}`);
  assert.deepEqual([...h2.keys()].sort(), names, "every replica served some of the 30 calls");
  const h2Log = await eventually(
    () => executeLog(haproxy.output()).filter(([, , v]) => v === "HTTP/2.0"),
    (lines) => lines.length >= 30,
  );
  assert.equal(h2Log.length, 30);
  assert.equal(new Set(h2Log.map(([client]) => client)).size, 1, "one client connection");
  const logged = new Map<string, number>();
  for (const [, backend] of h2Log) logged.set(backend, (logged.get(backend) ?? 0) + 1);
  assert.deepEqual(
    logged,
    new Map([...h2].map(([name, n]) => [`gateways/${name}`, n])),
    "the access log agrees with the header",
  );

  const h1 = await servedBy(
    createConnectTransport({ baseUrl: haproxy.baseUrl, httpVersion: "1.1" }),
    30,
  );
  t.diagnostic(`30 calls over HTTP/1.1: ${JSON.stringify(Object.fromEntries(h1))}`);
  assert.deepEqual([...h1.keys()].sort(), names);
  const h1Log = await eventually(
    () => executeLog(haproxy.output()).filter(([, , v]) => v === "HTTP/1.1"),
    (lines) => lines.length >= 30,
  );
  assert.equal(h1Log.length, 30);

  // gRPC: the status travels in HTTP/2 trailers, which must pass through.
  const grpc = createClient(DatabaseService, createGrpcTransport({ baseUrl: haproxy.baseUrl }));
  const ok = await grpc.execute({ sql: "SELECT 7 AS n" });
  assert.equal(ok.rows[0]?.values[0]?.kind.value, 7n);
  await assert.rejects(grpc.execute({ sql: "SELEC 7" }), (err) => {
    const e = ConnectError.from(err);
    assert.equal(e.code, Code.InvalidArgument);
    assert.match(e.message, /SQL syntax/);
    return true;
  });

  // An HTTP/1.1 GET asking to upgrade to h2c (what `curl --http2` sends; GET
  // is also how Connect calls idempotent methods) is served as plain
  // HTTP/1.1: without the del-header lines it reaches Node as an extended
  // CONNECT and fails with 502.
  const upgraded = await getHttp1(`${haproxy.baseUrl}/readyz`, {
    connection: "Upgrade, HTTP2-Settings",
    upgrade: "h2c",
    "http2-settings": "AAMAAABkAAQAAP__",
  });
  assert.equal(upgraded.status, 200, upgraded.body);
  assert.deepEqual(JSON.parse(upgraded.body), { status: "ready", mysql: "ok" });
  assert.ok(names.includes(upgraded.backend ?? ""));
});

test("sqlgate-owner reaches its replica; a dead owner answers 503 while other calls go on", async (t) => {
  const { db, replicas, haproxy } = await threeBehindHaproxy(t);
  const g2 = replicas.find((r) => r.name === "g2") as Replica;
  await db.admin.query("CREATE TABLE calls (id INT PRIMARY KEY)");
  const transport = createConnectTransport({ baseUrl: haproxy.baseUrl, httpVersion: "2" });

  const owned = await servedBy(transport, 15, { "sqlgate-owner": "g2" });
  assert.deepEqual(owned, new Map([["g2", 15]]), "every owned call on g2");
  // A name outside the map goes to the pool (whose gateway answers for the token).
  const unknown = await servedBy(transport, 6, { "sqlgate-owner": "g9" });
  assert.equal(
    [...unknown.values()].reduce((a, b) => a + b),
    6,
  );

  const load = startLoad(haproxy.baseUrl, "calls");
  const sdkReads = await startSdkReads(haproxy.baseUrl);
  let markedDownAt = Number.POSITIVE_INFINITY;
  await sleep(500);

  const session = http2.connect(haproxy.baseUrl);
  t.after(() => session.close());
  const killedAt = performance.now();
  const inFlightAtKill = load.inFlight();
  g2.process.child.kill("SIGKILL");
  const downWatch = haproxy
    .waitForServers((servers) => servers.some((s) => s.server === "g2" && s.status === "DOWN"))
    .then(() => {
      markedDownAt = performance.now();
    });
  const ownedAfterKill: H2Outcome[] = [];
  while (
    (performance.now() - killedAt < 2500 ||
      ownedAfterKill.filter((o) => o.started > markedDownAt).length < 5) &&
    performance.now() - killedAt < 10_000
  ) {
    ownedAfterKill.push(await postH2(session, { "sqlgate-owner": "g2" }));
    await sleep(50);
  }
  await downWatch;
  await sleep(500);
  const calls = await load.stop();
  const reads = await sdkReads.stop();

  const failed = calls.filter((c) => c.error !== undefined);
  const afterDown = calls.filter((c) => c.started > markedDownAt);
  t.diagnostic(
    `g2 marked DOWN ${Math.round(markedDownAt - killedAt)} ms after SIGKILL; ` +
      `${calls.length} calls, ${failed.length} failed, ${inFlightAtKill} in flight at the kill; ` +
      `owned calls after the kill: ${ownedAfterKill.length}, statuses ${[...new Set(ownedAfterKill.map((o) => o.status))]}, ` +
      `ms ${ownedAfterKill.map((o) => Math.round(o.ms)).join(" ")}`,
  );
  for (const f of failed) t.diagnostic(`failed: ${f.error}`);
  t.diagnostic(`SDK reads: ${reads.reads}, failed ${reads.failures.length}`);

  // Owned calls from the kill on: 503, or a stream HAProxy reset with
  // REFUSED_STREAM (sent on its connection to g2 as g2 died); never an answer.
  assert.ok(ownedAfterKill.length >= 5);
  for (const o of ownedAfterKill) {
    assert.ok(
      o.status === 503 || /REFUSED_STREAM/.test(o.error ?? ""),
      `a call for a dead owner is refused, never run elsewhere: ${JSON.stringify(o)}`,
    );
    assert.ok(o.ms < 1000, `refused quickly: ${JSON.stringify(o)}`);
  }
  const ownedAfterDown = ownedAfterKill.filter((o) => o.started > markedDownAt);
  assert.ok(ownedAfterDown.every((o) => o.status === 503 && o.ms < 250));
  assert.ok(markedDownAt - killedAt < 2000, "the dead replica is marked down within 2 s");
  assert.ok(afterDown.length > 0, "calls went on");
  assert.deepEqual(
    afterDown.filter((c) => c.error !== undefined || c.backend === "g2"),
    [],
    "no failure once it is down",
  );
  // Only calls HAProxy had sent on its connections to g2 as it died may fail
  // (at most one per caller): they are not retried, since they may have run.
  assert.ok(failed.length <= load.callers, `${failed.length} failed`);
  for (const f of failed) {
    assert.ok(f.started < markedDownAt);
    // HTTP/2 callers see the stream refused; the HTTP/1.1 caller its connection cut.
    assert.match(f.error ?? "", /REFUSED_STREAM|unavailable|HTTP 502|socket hang up/i);
  }
  // Every acknowledged insert is there; a resent one would have failed on the key.
  const rows = await countRows(db.admin, "calls");
  assert.ok(rows >= calls.length - failed.length && rows <= calls.length);
  // Stateless reads through the SDK: a lost one is resent, none fails.
  assert.ok(reads.reads > 0);
  assert.deepEqual(reads.failures, [], "no SDK read failed");

  const after = await servedBy(transport, 12);
  assert.deepEqual([...after.keys()].sort(), ["g1", "g3"], "the survivors share the calls");
});

test("a replica stopped with SIGTERM is drained: not one call fails", async (t) => {
  // Readiness turns red at SIGTERM; the listener stays open this long, for
  // HAProxy's next health check (every 500 ms) to take the replica out.
  const { db, replicas, haproxy } = await threeBehindHaproxy(t, {
    SQLGATE_SHUTDOWN_DELAY_MS: "1500",
  });
  const g2 = replicas.find((r) => r.name === "g2") as Replica;
  await db.admin.query("CREATE TABLE calls (id INT PRIMARY KEY)");

  const load = startLoad(haproxy.baseUrl, "calls");
  await sleep(500);
  const stoppedAt = performance.now();
  g2.process.child.kill("SIGTERM");
  await haproxy.waitForServers((servers) =>
    servers.some((s) => s.server === "g2" && s.status === "DOWN"),
  );
  const downAt = performance.now();
  assert.equal(await g2.process.exited, 0);
  const exitedAt = performance.now();
  await sleep(300);
  const calls = await load.stop();

  const failed = calls.filter((c) => c.error !== undefined);
  t.diagnostic(
    `SIGTERM: g2 DOWN after ${Math.round(downAt - stoppedAt)} ms, exited after ${Math.round(exitedAt - stoppedAt)} ms; ` +
      `${calls.length} calls (${calls.filter((c) => c.backend === "g2").length} on g2), ${failed.length} failed`,
  );
  assert.ok(
    calls.some((c) => c.backend === "g2" && c.started > stoppedAt),
    "g2 served on after SIGTERM",
  );
  assert.deepEqual(failed, []);
  assert.equal(await countRows(db.admin, "calls"), calls.length);
});

/** The live replica whose statement pool has a connection leased: the one running a call. */
async function replicaRunningACall(replicas: readonly Replica[]): Promise<Replica> {
  const busy: Replica[] = [];
  for (const r of replicas.filter(
    (r) => r.process.child.exitCode === null && !r.process.child.killed,
  )) {
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    if (/^sqlgate_pool_connections_in_use\{[^}]*pool="statements"[^}]*\} [1-9]/m.test(metrics)) {
      busy.push(r);
    }
  }
  assert.equal(busy.length, 1, "exactly one replica runs the call");
  return busy[0] as Replica;
}

test("a replica dying mid-call: HAProxy resets the stream as refused; grpc-js resends it, the SDK only a read", async (t) => {
  const { db, replicas, haproxy } = await threeBehindHaproxy(t);
  await db.admin.query("CREATE TABLE probe (id INT AUTO_INCREMENT PRIMARY KEY, tag VARCHAR(20))");
  const live = [...replicas];
  /** A one-second INSERT through `send`; its replica is killed while MySQL runs it. */
  const killMidCall = async (tag: string, send: (sql: string) => Promise<unknown>) => {
    const outcome = send(
      `INSERT INTO probe (tag) SELECT '${tag}' FROM DUAL WHERE SLEEP(1) = 0 /* ${tag} */`,
    ).then(
      () => "ok",
      (err: unknown) => ConnectError.from(err),
    );
    const until = Date.now() + 5000;
    while ((await runningStatements(db.admin, tag)) === 0) {
      assert.ok(Date.now() < until, "the statement reached MySQL");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const victim = await replicaRunningACall(live);
    victim.process.child.kill("SIGKILL");
    const result = await outcome;
    // MySQL does not notice that the replica is gone: the statement runs to its end.
    await waitUntilGone(db.admin, tag, 5000);
    // The next case starts with all three replicas up again.
    live[live.indexOf(victim)] = await restartReplica(t, victim);
    await haproxy.waitForServers((servers) => servers.every((s) => s.status === "UP"));
    const [rows] = (await db.admin.query("SELECT COUNT(*) AS n FROM probe WHERE tag = ?", [
      tag,
    ])) as unknown as [{ n: number }[]];
    return { result, victim: victim.name, rows: Number(rows[0]?.n) };
  };

  // A Connect client gets the reset as an error and does not resend.
  const connect = createClient(
    DatabaseService,
    createConnectTransport({ baseUrl: haproxy.baseUrl, httpVersion: "2" }),
  );
  const viaConnect = await killMidCall("connect_call", (sql) => connect.execute({ sql }));
  t.diagnostic(
    `Connect: killed ${viaConnect.victim}; ${viaConnect.result}; rows ${viaConnect.rows}`,
  );
  assert.ok(viaConnect.result instanceof ConnectError);
  assert.match(viaConnect.result.message, /REFUSED_STREAM/);
  assert.equal(viaConnect.rows, 1, "it ran, though the caller was told it failed");

  // grpc-js resends a stream refused with REFUSED_STREAM once, by itself (a
  // "transparent retry": RFC 9113 says such a stream was not processed). It
  // was: the INSERT runs twice and the caller sees one success.
  const client = new grpc.Client(`127.0.0.1:${haproxy.port}`, grpc.credentials.createInsecure());
  t.after(() => client.close());
  const viaGrpcJs = await killMidCall(
    "grpc_js_call",
    (sql) =>
      new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          executePath,
          (m: ExecuteRequest) => Buffer.from(toBinary(ExecuteRequestSchema, m)),
          (b: Buffer) => fromBinary(ExecuteResponseSchema, b),
          create(ExecuteRequestSchema, { sql }),
          (err, res) => (err ? reject(err) : resolve(res)),
        );
      }),
  );
  t.diagnostic(`grpc-js: killed ${viaGrpcJs.victim}; ${viaGrpcJs.result}; rows ${viaGrpcJs.rows}`);
  assert.equal(viaGrpcJs.result, "ok");
  assert.equal(viaGrpcJs.rows, 2, "one call, two INSERTs");

  // The SDK resends a read whose replica died under it (running it twice
  // changes nothing), and never a write.
  const { createClient: createSdk } = await import("../client/src/index.js");
  const sdk = createSdk({ url: haproxy.baseUrl });
  t.after(() => sdk.close());
  const sdkWrite = await killMidCall("sdk_write", (sql) => sdk.execute(sql));
  const sdkRead = await killMidCall("sdk_read", () =>
    sdk.execute("SELECT SLEEP(1) AS slept /* sdk_read */"),
  );
  t.diagnostic(`SDK: write ${sdkWrite.result}; read ${sdkRead.result}`);
  assert.ok(sdkWrite.result instanceof ConnectError);
  assert.equal(sdkWrite.rows, 1, "the write ran once and was not resent");
  assert.equal(sdkRead.result, "ok", "the read was resent to a live replica");
});

test("scripts/haproxy.sh renders the template for a list of replicas and haproxy -c accepts it", async (t) => {
  const stateDir = path.join(os.tmpdir(), `sqlgate-haproxy-check-${process.pid}`);
  t.after(() => rmSync(stateDir, { recursive: true, force: true }));
  const env = {
    ...process.env,
    SQLGATE_HAPROXY_STATE_DIR: stateDir,
    SQLGATE_HAPROXY_LISTEN: "127.0.0.1:18081",
    SQLGATE_HAPROXY_BACKENDS: "g1=127.0.0.1:19001 g2=127.0.0.1:19002  g3=10.0.0.3:8080",
  };
  const { stdout } = await run("scripts/haproxy.sh", ["--check"], { env });
  assert.match(stdout, /Configuration file is valid/);
  const configFile = path.join(stateDir, "haproxy.cfg");
  assert.equal(stdout.trim().split("\n").at(-1), configFile);
  await run("haproxy", ["-c", "-q", "-f", configFile]);

  const lines = readFileSync(configFile, "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  assert.deepEqual(
    lines.filter((line) => line.startsWith("server ")),
    [
      "server g1 127.0.0.1:19001 check",
      "server g2 127.0.0.1:19002 check",
      "server g3 10.0.0.3:8080 check",
      "server g1 127.0.0.1:19001 track gateways/g1",
      "server g2 127.0.0.1:19002 track gateways/g2",
      "server g3 10.0.0.3:8080 track gateways/g3",
    ],
  );
  assert.deepEqual(
    lines.filter((line) => line.startsWith("backend ")),
    ["backend gateways", "backend owner_g1", "backend owner_g2", "backend owner_g3"],
  );
  assert.ok(lines.includes("bind 127.0.0.1:18081"));
  assert.ok(lines.includes("retry-on conn-failure"), "connection failures only: no resent calls");
  assert.equal(lines.filter((line) => line.startsWith("retry-on")).length, 1);
  assert.equal(
    readFileSync(path.join(stateDir, "owners.map"), "utf8"),
    [
      "g1 owner_g1",
      "http://127.0.0.1:19001 owner_g1",
      "g2 owner_g2",
      "http://127.0.0.1:19002 owner_g2",
      "g3 owner_g3",
      "http://10.0.0.3:8080 owner_g3",
      "",
    ].join("\n"),
  );

  const refused = async (extra: Record<string, string>, message: RegExp) => {
    const err = await run("scripts/haproxy.sh", ["--check"], { env: { ...env, ...extra } }).then(
      () => assert.fail(`accepted ${JSON.stringify(extra)}`),
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(err.code, 1);
    assert.match(err.stderr, message);
  };
  await refused({ SQLGATE_HAPROXY_BACKENDS: "g1=127.0.0.1:1 g1=127.0.0.1:2" }, /used twice/);
  await refused({ SQLGATE_HAPROXY_BACKENDS: "g1=127.0.0.1" }, /not name=host:port/);
  await refused({ SQLGATE_HAPROXY_BACKENDS: "" }, /set SQLGATE_HAPROXY_BACKENDS/);
  await refused({ SQLGATE_HAPROXY_LISTEN: "0.0.0.0:18081" }, /not a loopback address/);
  await run("scripts/haproxy.sh", ["--check"], {
    env: { ...env, SQLGATE_HAPROXY_LISTEN: "0.0.0.0:18081", SQLGATE_HAPROXY_ALLOW_PUBLIC: "true" },
  });
});

test("transactions through the balancer: forwarded to their owner without a header; routed to it with the SDK's", async (t) => {
  const { db, replicas, haproxy } = await threeBehindHaproxy(t);
  await db.admin.query("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT)");
  await db.admin.query("INSERT INTO accounts VALUES (1, 100), (2, 0)");

  // A plain Connect client: the balancer spreads the transaction's calls over
  // the replicas, and each forwards them to the owner.
  const client = createClient(
    DatabaseService,
    createConnectTransport({ baseUrl: haproxy.baseUrl, httpVersion: "2" }),
  );
  let owner = "";
  const { session } = await client.beginTransaction(
    {},
    { onHeader: (h) => (owner = h.get("sqlgate-node") ?? "") },
  );
  const backends = new Set<string>();
  const connectionIds = new Set<unknown>();
  for (let i = 0; i < 6; i++) {
    const res = await client.execute(
      { session, sql: "SELECT CONNECTION_ID()" },
      {
        onHeader: (h) => {
          backends.add(h.get("sqlgate-backend") ?? "");
          assert.equal(h.get("sqlgate-node"), owner, "the owner answered");
        },
      },
    );
    connectionIds.add(res.rows[0]?.values[0]?.kind.value);
  }
  await client.execute({ session, sql: "UPDATE accounts SET balance = balance - 10 WHERE id = 1" });
  await client.execute({ session, sql: "UPDATE accounts SET balance = balance + 10 WHERE id = 2" });
  const [before] = (await db.admin.query(
    "SELECT SUM(balance) AS s, MIN(balance) AS m FROM accounts",
  )) as unknown as [{ s: string; m: number }[]];
  assert.equal(before[0]?.m, 0, "isolation: nothing visible before the commit");
  await client.commitTransaction({ session });
  assert.ok(backends.size >= 2, `calls reached ${[...backends].join(", ")}`);
  assert.equal(connectionIds.size, 1, "every statement ran on the owner's connection");
  assert.ok(replicas.some((r) => r.url === owner));

  // The SDK names the owner in `sqlgate-owner`: the balancer sends its calls there.
  const { createClient: createSdk } = await import("../client/src/index.js");
  const sdk = createSdk({ url: haproxy.baseUrl });
  t.after(() => sdk.close());
  await sdk.transaction(async (tx) => {
    for (let i = 0; i < 4; i++) await tx.execute("SELECT CONNECTION_ID()");
    await tx.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 2");
  });
  const [after] = (await db.admin.query(
    "SELECT balance FROM accounts WHERE id = 2",
  )) as unknown as [{ balance: number }[]];
  assert.equal(after[0]?.balance, 11);
  const log = haproxy.output();
  assert.match(log, /owner_g\d/, "the SDK's calls went through an owner backend");
});

test("a rolling restart of every replica under SDK load: not one call fails, no write is lost", async (t) => {
  const { db, replicas, haproxy } = await threeBehindHaproxy(t, {
    SQLGATE_SHUTDOWN_DELAY_MS: "1500",
  });
  await db.admin.query("CREATE TABLE rolled (id INT PRIMARY KEY)");
  const { createClient: createSdk } = await import("../client/src/index.js");
  const sdk = createSdk({ url: haproxy.baseUrl });
  t.after(() => sdk.close());
  let running = true;
  const failures: string[] = [];
  let acknowledged = 0;
  const callers = Array.from({ length: 6 }, async (_, caller) => {
    for (let n = 0; running; n++) {
      try {
        await sdk.execute("INSERT INTO rolled VALUES (?)", [caller * 1_000_000 + n]);
        acknowledged++;
      } catch (err) {
        failures.push(String(err));
        await sleep(5);
      }
    }
  });
  await sleep(500);
  for (const replica of replicas) {
    replica.process.child.kill("SIGTERM");
    assert.equal(await replica.process.exited, 0, `${replica.name} exited cleanly`);
    await restartReplica(t, replica);
    await haproxy.waitForServers((servers) =>
      servers.some((s) => s.server === replica.name && s.status === "UP"),
    );
  }
  await sleep(500);
  running = false;
  await Promise.all(callers);
  t.diagnostic(`${acknowledged} writes through a rolling restart, ${failures.length} failed`);
  assert.deepEqual(failures, []);
  assert.equal(await countRows(db.admin, "rolled"), acknowledged);
});
