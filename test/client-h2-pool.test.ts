/**
 * The SDK's pool of HTTP/2 sessions against the real gateway and MariaDB:
 * what a stalled reader does (and does not do) to its session, the gateway's
 * stream limit that does hold a session up, round robin, keepalive PINGs,
 * reconnection after the gateway drops or restarts, and close().
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import type http2 from "node:http2";
import type net from "node:net";
import path from "node:path";
import { test } from "node:test";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import {
  createPooledHttp2Transport,
  type PooledHttp2Options,
  type PooledHttp2Transport,
} from "../client/src/node/http2-pool.js";
import { DatabaseService } from "../gen/sqlgate/v1/database_pb.js";
import { startGateway, type TestGateway } from "./support/gateway.js";
import { createTestDatabase, runningStatements } from "./support/mysql.js";
import { selfSignedCertificate } from "./support/tls.js";

/** ~420 MB if read to the end: far more than any window or buffer holds. */
const largeResult = (marker: string) =>
  `SELECT seq, REPEAT('x', 200) AS pad, '${marker}' FROM seq_1_to_2000000`;

/** Generous for a loaded two-core machine; an answered SELECT 1 takes a few ms. */
const fastMs = 500;

interface Cleanup {
  /** Runs `fn` when the test ends, before the gateways close (which wait for open streams). */
  add(fn: () => void): void;
}

/**
 * Call before startGateway: node:test runs `after` hooks in the order they
 * were added. Runs its own in reverse: streams end before their pool closes.
 */
function cleanup(t: { after(fn: () => unknown): void }): Cleanup {
  const fns: (() => void)[] = [];
  t.after(() => {
    for (const fn of fns.reverse()) fn();
  });
  return { add: (fn) => fns.push(fn) };
}

function openPool(c: Cleanup, options: PooledHttp2Options): PooledHttp2Transport {
  const pool = createPooledHttp2Transport(options);
  c.add(() => pool.close());
  return pool;
}

/**
 * Starts a large StreamExecute, takes its first message and stops reading:
 * the gateway then waits on HTTP/2 flow control with the statement open.
 */
async function stallStream(c: Cleanup, transport: Transport, marker = "pool_stall") {
  const abort = new AbortController();
  c.add(() => abort.abort());
  const messages = createClient(DatabaseService, transport)
    .streamExecute({ sql: largeResult(marker) }, { signal: abort.signal })
    [Symbol.asyncIterator]();
  const first = await messages.next();
  assert.equal(first.done, false);
  return { messages, abort };
}

/** Times one `SELECT 1`; fails the test if it takes longer than `withinMs`. */
async function timedSelect1(transport: Transport, withinMs = 2000): Promise<number> {
  const started = performance.now();
  const response = await createClient(DatabaseService, transport).execute(
    { sql: "SELECT 1" },
    { timeoutMs: withinMs },
  );
  assert.equal(response.rows.length, 1);
  return performance.now() - started;
}

async function waitFor(what: string, condition: () => boolean, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs;
  while (!condition()) {
    assert.ok(Date.now() < until, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const started = (pool: PooledHttp2Transport) => pool.stats().map((s) => s.streamsStarted);

/** A stream closes a moment after its call returned: waits for the last ones. */
const settled = (pool: PooledHttp2Transport) =>
  waitFor("the streams of finished calls to close", () =>
    pool.stats().every((s) => s.openStreams === 0),
  );

/**
 * A TLS gateway, whose HTTP/2 sessions the test can reach (over TLS the
 * listening server is the HTTP/2 server itself): `onSession` sees each one.
 */
async function startTlsGateway(
  t: { after(fn: () => unknown): void },
  mysqlUrl: string,
  onSession: (session: http2.ServerHttp2Session) => void,
): Promise<{ gateway: TestGateway; ca: Buffer }> {
  const certificate = await selfSignedCertificate(t);
  const gateway = await startGateway(t, mysqlUrl, { tls: certificate });
  (gateway.app.server as unknown as http2.Http2SecureServer).on("session", onSession);
  return { gateway, ca: certificate.cert };
}

test("a stalled reader holds only its own stream window: calls on its session still answer", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  const gateway = await startGateway(t, db.url);
  // One session: every call shares the connection with the stalled stream.
  const pool = openPool(c, { baseUrl: gateway.baseUrl, sessions: 1, stalledAfterMs: 200 });
  await stallStream(c, pool.transport, "stall_one_session");
  await waitFor("the stream to count as stalled", () => pool.stats()[0]?.stalledStreams === 1);
  assert.equal(await runningStatements(db.admin, "stall_one_session"), 1, "the statement is open");
  // Node returns received DATA to the connection window at once and holds
  // back only the stalled stream's own 64 KiB window, so nothing waits here.
  for (let i = 0; i < 5; i++) {
    const ms = await timedSelect1(pool.transport);
    assert.ok(ms < fastMs, `SELECT 1 took ${ms.toFixed(0)} ms next to a stalled stream`);
  }
  assert.deepEqual(started(pool), [6]);
  // A stream closes a moment after its call returned.
  await waitFor("only the stalled stream to be open", () => pool.stats()[0]?.openStreams === 1);
});

test("calls go round robin, and pass over a session with a stalled stream", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  const gateway = await startGateway(t, db.url);
  const pool = openPool(c, { baseUrl: gateway.baseUrl, stalledAfterMs: 200 });
  assert.equal(pool.stats().length, 4, "four sessions by default");
  assert.deepEqual(
    pool.stats().map((s) => s.state),
    ["closed", "closed", "closed", "closed"],
    "no connection before the first call",
  );
  for (let i = 0; i < 8; i++) await timedSelect1(pool.transport);
  assert.deepEqual(started(pool), [2, 2, 2, 2]);
  await settled(pool);
  assert.deepEqual(
    pool.stats().map((s) => [s.state, s.connections, s.openStreams]),
    Array(4).fill(["idle", 1, 0]),
  );

  // The next call lands on session 0; its reader stops after one message.
  const stalled = await stallStream(c, pool.transport, "stall_round_robin");
  await waitFor("session 0 to have a stalled stream", () => pool.stats()[0]?.stalledStreams === 1);
  for (let i = 0; i < 6; i++) {
    const ms = await timedSelect1(pool.transport);
    assert.ok(ms < fastMs, `SELECT 1 took ${ms.toFixed(0)} ms`);
  }
  assert.deepEqual(started(pool), [3, 4, 4, 4], "nothing more went to session 0");
  assert.equal(await runningStatements(db.admin, "stall_round_robin"), 1, "the stream is open");

  // Once the stalled stream is gone, session 0 takes its turn again.
  stalled.abort.abort();
  await waitFor("the aborted stream to close", () => pool.stats()[0]?.openStreams === 0);
  for (let i = 0; i < 4; i++) await timedSelect1(pool.transport);
  assert.deepEqual(started(pool), [4, 5, 5, 5]);
});

test("at the gateway's stream limit one session queues every call; the pool uses the others", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  // A gateway that allows one stream per connection, as if it were busy.
  const { gateway, ca } = await startTlsGateway(t, db.url, (session) =>
    session.settings({ maxConcurrentStreams: 1 }),
  );

  // The SDK's transport so far, one Http2SessionManager: a call waits behind
  // the held stream until its deadline.
  const single = createConnectTransport({
    baseUrl: gateway.baseUrl,
    httpVersion: "2",
    nodeOptions: { ca },
  });
  const held = await stallStream(c, single);
  const startedAt = Date.now();
  await assert.rejects(
    timedSelect1(single, 2000),
    (err) => err instanceof ConnectError && err.code === Code.DeadlineExceeded,
  );
  assert.ok(Date.now() - startedAt >= 1900, "the call waited for its whole deadline");
  held.abort.abort();

  // The pool (default sessions, ALPN h2 with the test CA) sees the limit in
  // the gateway's SETTINGS and sends calls past the full session.
  const pool = openPool(c, { baseUrl: gateway.baseUrl, nodeOptions: { ca } });
  await stallStream(c, pool.transport);
  await waitFor("the gateway's limit", () => pool.stats()[0]?.maxConcurrentStreams === 1);
  for (let i = 0; i < 6; i++) {
    const ms = await timedSelect1(pool.transport);
    assert.ok(ms < fastMs, `SELECT 1 took ${ms.toFixed(0)} ms`);
  }
  assert.deepEqual(started(pool), [1, 2, 2, 2]);
  assert.equal(pool.stats()[0]?.openStreams, 1);
});

test("a session with an open stream sends keepalive PINGs every pingIntervalMs", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  let pings = 0;
  const { gateway, ca } = await startTlsGateway(t, db.url, (session) =>
    session.on("ping", () => pings++),
  );
  const pool = openPool(c, {
    baseUrl: gateway.baseUrl,
    sessions: 1,
    pingIntervalMs: 100,
    nodeOptions: { ca },
  });
  await timedSelect1(pool.transport);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(pings, 0, "an idle session is not pinged");
  // A stalled stream receives nothing, so nothing else shows the connection is alive.
  await stallStream(c, pool.transport);
  await new Promise((r) => setTimeout(r, 750));
  assert.ok(pings >= 4, `${pings} PINGs in 750 ms at a 100 ms interval`);
  assert.equal(pool.stats()[0]?.state, "open", "every PING was answered");
});

test("sessions the gateway drops are replaced, and calls keep working", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  const gateway = await startGateway(t, db.url);
  const sockets = new Set<net.Socket>();
  // Cleartext: the listening server is a net.Server that hands sockets on.
  (gateway.app.server as unknown as net.Server).on("connection", (socket: net.Socket) =>
    sockets.add(socket),
  );
  const pool = openPool(c, { baseUrl: gateway.baseUrl });
  for (let i = 0; i < 8; i++) await timedSelect1(pool.transport);
  assert.equal(sockets.size, 4);

  // The gateway side resets every connection, one with a stream on it.
  const stalled = await stallStream(c, pool.transport);
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  // It still hands out what it had buffered, then fails.
  await assert.rejects(async () => {
    for (;;) if ((await stalled.messages.next()).done) break;
  }, ConnectError);
  await waitFor("the pool to see its sessions gone", () =>
    pool.stats().every((s) => s.state === "closed" || s.state === "error"),
  );

  for (let i = 0; i < 8; i++) {
    const ms = await timedSelect1(pool.transport);
    assert.ok(ms < fastMs, `SELECT 1 took ${ms.toFixed(0)} ms after the reset`);
  }
  assert.equal(sockets.size, 4, "four new connections");
  await settled(pool);
  assert.deepEqual(
    pool.stats().map((s) => [s.state, s.connections]),
    Array(4).fill(["idle", 2]),
  );
});

test("calls fail while the gateway is down and work again once it is back on its port", async (t) => {
  const db = await createTestDatabase(t);
  const c = cleanup(t);
  // Stopped by hand: its `after` hooks (close, remove its data directory) run mid-test.
  const stopFirst: (() => unknown)[] = [];
  const first = await startGateway({ after: (fn: () => unknown) => stopFirst.push(fn) }, db.url);
  const pool = openPool(c, { baseUrl: first.baseUrl });
  for (let i = 0; i < 4; i++) await timedSelect1(pool.transport);
  for (const fn of stopFirst) await fn();

  const down = await Promise.allSettled(
    Array.from({ length: 4 }, () => timedSelect1(pool.transport)),
  );
  for (const result of down) {
    assert.equal(result.status, "rejected");
    assert.equal(ConnectError.from(result.reason).code, Code.Unavailable);
  }
  const states = pool.stats().map((s) => s.state);
  assert.ok(states.includes("error"), states.join());

  await startGateway(t, db.url, { port: first.port });
  for (let i = 0; i < 8; i++) await timedSelect1(pool.transport);
  // Failed sessions are passed over while others work, and reconnect in the
  // background (at most once a second each), so all four come back.
  await waitFor(
    "every session to reconnect",
    () => pool.stats().every((s) => s.state === "idle" || s.state === "open"),
    3000,
  );
  for (let i = 0; i < 8; i++) await timedSelect1(pool.transport);
  assert.ok(
    pool.stats().every((s) => s.connections === 2),
    JSON.stringify(pool.stats()),
  );
});

test("close() cancels running calls, refuses new ones and lets the process exit", async (t) => {
  const db = await createTestDatabase(t);
  const gateway = await startGateway(t, db.url);
  const root = path.resolve(import.meta.dirname, "..");
  // A process of its own: it must end by itself once the pool is closed.
  const script = `
    import { createClient } from "@connectrpc/connect";
    import { DatabaseService } from "${root}/gen/sqlgate/v1/database_pb.ts";
    import { createPooledHttp2Transport } from "${root}/client/src/node/http2-pool.ts";
    const pool = createPooledHttp2Transport({ baseUrl: process.argv[1] });
    const client = createClient(DatabaseService, pool.transport);
    for (let i = 0; i < 4; i++) await client.execute({ sql: "SELECT 1" });
    const stream = client.streamExecute({ sql: ${JSON.stringify(largeResult("stall_close"))} })[Symbol.asyncIterator]();
    await stream.next();
    pool.close();
    const codeOf = (p) => p.then(() => "ok", (e) => e.code);
    console.log(JSON.stringify({
      running: await codeOf(stream.next()),
      later: await codeOf(client.execute({ sql: "SELECT 1" })),
      states: pool.stats().map((s) => s.state),
    }));
  `;
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "--input-type=module", "--eval", script, gateway.baseUrl],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
  );
  let stdout = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk;
  });
  const timer = setTimeout(() => child.kill(), 15_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once("exit", (c, s) => resolve([c, s])),
  );
  clearTimeout(timer);
  assert.equal(signal, null, "the process had to be killed: something kept it alive");
  assert.equal(code, 0);
  assert.deepEqual(JSON.parse(stdout), {
    running: Code.Canceled,
    later: Code.Canceled,
    states: ["closed", "closed", "closed", "closed"],
  });
});
